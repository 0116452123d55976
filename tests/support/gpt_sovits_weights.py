#!/usr/bin/env python3
"""Generate a tiny, randomly initialised GPT-SoVITS v2 model set, fully offline, for tests.

No pretrained weights can be downloaded in CI, but the real pipeline runs on random weights. This script builds
them with the installed GPT-SoVITS distribution's own model classes (gpt-sovits-cpufast re-implements BERT and
HuBERT in plain torch), so every file loads with no missing or unexpected keys:

    OUT/s1.ckpt                          GPT (t2s) {"config", "weight"}: vocab 1025, EOS 1024, phonemes 732, 2 layers (--t2s-layers)
    OUT/s2G.pth                          SoVITS {"config", "weight"}: the 32 kHz s2G488k hyper-parameters
    OUT/chinese-roberta-wwm-ext-large/   2-layer BERT (hidden 1024) and a tokenizer from a written vocab.txt
    OUT/chinese-hubert-base/             2-layer HuBERT (hidden 768) and preprocessor_config.json
    OUT/ref.wav                          a 4 s, 32 kHz voiced-like reference clip (GPT-SoVITS wants 3-10 s)
    OUT/tts_infer.yaml                   a `custom` block with absolute paths

Random weights rarely emit the end token, so decoding runs to 50 x `--max-sec` tokens: keep it small. It imports
GPT_SoVITS, which rearranges sys.path: run it as its own process.

    python tests/support/gpt_sovits_weights.py OUT_DIR [--seed 0] [--max-sec 2] [--small-vits] [--nltk-data DIR]
"""
# ruff: noqa: I001 - GPT_SoVITS must be imported before its short-named modules (AR, module, text, ...)
from __future__ import annotations

import argparse
import json
import sys
import time
import wave
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

import GPT_SoVITS  # noqa: F401  (puts site-packages/GPT_SoVITS on sys.path for the short imports below)
import AR.models.t2s_model as _t2s_model_mod
from AR.models.t2s_lightning_module import Text2SemanticLightningModule
from module.models import SynthesizerTrn
from text.chinese_bert import BertForMaskedLM
from feature_extractor.cnhubert import HubertInferenceModel

# Building the training "h" transformer wants torchmetrics (only for a training
# accuracy metric). We need the "h" weights in the checkpoint (the runtime
# rebuilds its fused transformer from them), not the metric.
_t2s_model_mod._build_multiclass_accuracy_for_training = lambda *a, **k: None

# ---------------------------------------------------------------- configs --
T2S_CONFIG = {  # mirrors GPT_SoVITS/configs/s1longer-v2.yaml, with 2 layers
    "train": {"seed": 1234, "epochs": 20, "batch_size": 8, "save_every_n_epoch": 1,
              "precision": "16-mixed", "gradient_clip": 1.0},
    "optimizer": {"lr": 0.01, "lr_init": 1e-5, "lr_end": 1e-4, "warmup_steps": 2000, "decay_steps": 40000},
    "data": {"max_eval_sample": 8, "max_sec": 2, "num_workers": 4, "pad_val": 1024},
    "model": {"vocab_size": 1025, "phoneme_vocab_size": 732, "embedding_dim": 512, "hidden_dim": 512,
              "head": 16, "linear_units": 2048, "n_layer": 2, "dropout": 0, "EOS": 1024, "random_bert": 0},
    "inference": {"top_k": 15},
}

S2_HPS = {  # GPT_SoVITS/configs/s2.json == s2G488k / s2G2333k hyper-parameters (32 kHz)
    "train": {"log_interval": 100, "eval_interval": 500, "seed": 1234, "epochs": 100, "learning_rate": 0.0001,
              "betas": [0.8, 0.99], "eps": 1e-09, "batch_size": 32, "fp16_run": True, "lr_decay": 0.999875,
              "segment_size": 20480, "init_lr_ratio": 1, "warmup_epochs": 0, "c_mel": 45, "c_kl": 1.0,
              "text_low_lr_rate": 0.4, "grad_ckpt": False},
    "data": {"max_wav_value": 32768.0, "sampling_rate": 32000, "filter_length": 2048, "hop_length": 640,
             "win_length": 2048, "n_mel_channels": 128, "mel_fmin": 0.0, "mel_fmax": None, "add_blank": True,
             "n_speakers": 300, "cleaned_text": True},
    "model": {"inter_channels": 192, "hidden_channels": 192, "filter_channels": 768, "n_heads": 2, "n_layers": 6,
              "kernel_size": 3, "p_dropout": 0.1, "resblock": "1", "resblock_kernel_sizes": [3, 7, 11],
              "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "upsample_rates": [10, 8, 2, 2, 2],
              "upsample_initial_channel": 512, "upsample_kernel_sizes": [16, 16, 8, 2, 2], "n_layers_q": 3,
              "use_spectral_norm": False, "gin_channels": 512, "semantic_frame_rate": "25hz",
              "freeze_quantizer": True, "version": "v2"},
    "s2_ckpt_dir": "logs/s2/big2k1",
    "content_module": "cnhubert",
}

BERT_CONFIG = {  # chinese-roberta-wwm-ext-large shape (hidden 1024, 16 heads), 2 layers, small FFN and vocab
    "architectures": ["BertForMaskedLM"], "model_type": "bert",
    "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
    "hidden_size": 1024, "initializer_range": 0.02, "intermediate_size": 1024, "layer_norm_eps": 1e-12,
    "max_position_embeddings": 512, "num_attention_heads": 16, "num_hidden_layers": 2,
    "pad_token_id": 0, "type_vocab_size": 2, "vocab_size": None,  # filled from vocab.txt
}

HUBERT_CONFIG = {  # chinese-hubert-base shape (hidden 768, 320x downsampling = 50 Hz), 2 layers, slim
    "architectures": ["HubertModel"], "model_type": "hubert",
    "activation_dropout": 0.1, "attention_dropout": 0.1, "conv_bias": False,
    "conv_dim": [128] * 7, "conv_kernel": [10, 3, 3, 3, 3, 2, 2], "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "feat_extract_activation": "gelu", "feat_extract_norm": "group", "feat_proj_dropout": 0.0,
    "feat_proj_layer_norm": True, "hidden_act": "gelu", "hidden_dropout": 0.1, "hidden_size": 768,
    "intermediate_size": 768, "layer_norm_eps": 1e-05, "mask_feature_prob": 0.0, "mask_time_prob": 0.05,
    "num_attention_heads": 12, "num_conv_pos_embedding_groups": 16, "num_conv_pos_embeddings": 16,
    "num_feat_extract_layers": 7, "num_hidden_layers": 2, "vocab_size": 32,
}

PREPROCESSOR_CONFIG = {
    "do_normalize": True, "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1,
    "padding_side": "right", "padding_value": 0, "return_attention_mask": False, "sampling_rate": 16000,
}


def _maybe_half(sd: dict, fp16: bool) -> dict:
    return {k: (v.half() if fp16 and v.is_floating_point() else v).contiguous() for k, v in sd.items()}


# ------------------------------------------------------------------ parts --
def make_t2s(out: Path, max_sec: int, fp16: bool, layers: int = 2) -> None:
    config = json.loads(json.dumps(T2S_CONFIG))
    config["data"]["max_sec"] = max_sec
    config["model"]["n_layer"] = layers
    m = Text2SemanticLightningModule(config, "****", is_train=False)
    sd = {k: v for k, v in m.state_dict().items()}
    torch.save({"config": config, "weight": _maybe_half(sd, fp16), "info": "random-init"}, out / "s1.ckpt")


SMALL_VITS_OVERRIDES = {  # --small-vits: same model class/frame rate/hop (640 = 10*8*2*2*2), much lighter vocoder
    "upsample_initial_channel": 64, "resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 3, 5]],
    "filter_channels": 256,
}


def make_s2(out: Path, fp16: bool, keep_enc_q: bool = False, small: bool = False) -> None:
    hps = json.loads(json.dumps(S2_HPS))
    if small:
        hps["model"].update(SMALL_VITS_OVERRIDES)
    d, t, mdl = hps["data"], hps["train"], dict(hps["model"])
    net = SynthesizerTrn(d["filter_length"] // 2 + 1, t["segment_size"] // d["hop_length"],
                         n_speakers=d["n_speakers"], **mdl)
    with torch.no_grad():
        cb = net.quantizer.vq.layers[0]._codebook
        cb.embed.normal_(0.0, 1.0)        # kmeans_init=True leaves it all-zero
        cb.embed_avg.copy_(cb.embed)
        cb.cluster_size.fill_(1.0)
        cb.inited.fill_(1.0)              # otherwise forward() would run k-means via torch.distributed
    # Released checkpoints drop the training-only posterior encoder (enc_q, ~10 M params); so do we by
    # default, so TTS prints "missing_keys=[enc_q...]" exactly as with the official weights.
    sd = {k: v for k, v in net.state_dict().items() if keep_enc_q or not k.startswith("enc_q.")}
    torch.save({"weight": _maybe_half(sd, fp16), "config": hps, "info": "random-init"}, out / "s2G.pth")


def _bert_vocab() -> list[str]:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    ascii_ = [chr(c) for c in range(33, 127) if not ("A" <= chr(c) <= "Z")]
    cjk_punct = list("，。！？、；：“”‘’（）《》【】…—～·")
    common = list("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济喜离虽坏兴切呀乎讲故")
    seen, vocab = set(), []
    for tok in specials + ascii_ + cjk_punct + common:
        if tok not in seen:
            seen.add(tok)
            vocab.append(tok)
    return vocab


def make_bert(out: Path, fp16: bool) -> None:
    from tokenizers import BertWordPieceTokenizer

    d = out / "chinese-roberta-wwm-ext-large"
    d.mkdir(parents=True, exist_ok=True)
    vocab = _bert_vocab()
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = BertWordPieceTokenizer(str(d / "vocab.txt"), lowercase=True, handle_chinese_chars=True,
                                 strip_accents=None, clean_text=True)
    tok.save(str(d / "tokenizer.json"))
    cfg = dict(BERT_CONFIG, vocab_size=len(vocab))
    (d / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    model = BertForMaskedLM(SimpleNamespace(**cfg))
    torch.save(_maybe_half(model.state_dict(), fp16), d / "pytorch_model.bin")


def make_hubert(out: Path, fp16: bool) -> None:
    d = out / "chinese-hubert-base"
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(HUBERT_CONFIG, indent=2), encoding="utf-8")
    (d / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG, indent=2), encoding="utf-8")
    cfg = SimpleNamespace(**HUBERT_CONFIG)
    cfg.conv_pos_batch_norm = False
    model = HubertInferenceModel(cfg)
    # keys include encoder.pos_conv_embed.conv.weight_g / weight_v (old-style weight_norm), as cpufast expects
    torch.save(_maybe_half(model.state_dict(), fp16), d / "pytorch_model.bin")


def make_ref_wav(path: Path, seconds: float = 4.0, sr: int = 32000) -> None:
    """Deterministic voiced-ish signal: harmonic tone with vibrato + syllable envelope + noise."""
    rng = np.random.default_rng(1234)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 140.0 + 20.0 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    sig = sum(np.sin(k * phase) / k for k in range(1, 8))
    env = 0.55 + 0.45 * np.sin(2 * np.pi * 3.0 * t) ** 2
    sig = sig * env + 0.05 * rng.standard_normal(t.shape)
    sig = 0.5 * sig / np.abs(sig).max()
    pcm = (sig * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())


_TAGGED = [  # a few hand-tagged sentences: enough for a *stub* English POS tagger (not a real model)
    "I/PRP read/VBP books/NNS ./.", "I/PRP read/VBD the/DT record/NN ./.", "We/PRP record/VBP a/DT song/NN ./.",
    "They/PRP live/VBP here/RB ./.", "The/DT live/JJ show/NN ended/VBD ./.", "Please/UH close/VB the/DT door/NN ./.",
    "The/DT shop/NN is/VBZ close/JJ ./.", "This/DT is/VBZ a/DT test/NN ./.", "Hello/UH world/NN ./.",
    "We/PRP present/VBP the/DT present/NN ./.", "She/PRP will/MD object/VB to/TO the/DT object/NN ./.",
    "He/PRP used/VBD a/DT complex/JJ project/NN ./.", "They/PRP project/VBP numbers/NNS ./.",
]


def write_nltk_stub(nltk_data: Path) -> None:
    """Write NLTK_DATA/taggers/averaged_perceptron_tagger_eng/ trained on _TAGGED (tiny, offline).

    gpt-sovits-cpufast only calls nltk.pos_tag for sentences containing one of g2p_en's ~400 homographs
    ("read", "record", "live", "close", "present", ...); without this data nltk raises LookupError there.
    """
    from nltk.tag.perceptron import PerceptronTagger

    tagger = PerceptronTagger(load=False)
    sents = [[tuple(tok.rsplit("/", 1)) for tok in line.split()] for line in _TAGGED]
    import random as _random
    _random.seed(0)
    tagger.train(sents, nr_iter=5)
    d = nltk_data / "taggers" / "averaged_perceptron_tagger_eng"
    d.mkdir(parents=True, exist_ok=True)
    for fname, obj in zip(tagger.param_files("eng"), tagger.encode_json_obj(), strict=True):
        (d / fname).write_text(json.dumps(obj), encoding="utf-8")
    # g2p_en (a GPT-SoVITS checkout's English) checks for the older tagger's zip as it is imported, and downloads
    # it when missing: offline, a failed attempt at every start, or a hang where connections are dropped. NLTK's
    # pos_tag reads the _eng tagger above; the zip is the same files under the older name.
    _zip_as_nltk_download(d, nltk_data / "taggers" / "averaged_perceptron_tagger.zip", "averaged_perceptron_tagger")


def _zip_as_nltk_download(folder: Path, zip_path: Path, name: str) -> None:
    """What nltk.download leaves beside an unzipped package: its zip, the files under `name`/."""
    import zipfile

    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(folder.iterdir()):
            z.write(f, f"{name}/{f.name}")


def write_cmudict(nltk_data: Path) -> None:
    """Write NLTK_DATA/corpora/cmudict/cmudict: the CMU dictionary that GPT-SoVITS ships (text/cmudict.rep), in
    NLTK's layout. Upstream GPT-SoVITS's English front end builds g2p_en's G2p, which loads it through NLTK (and
    would download it, so offline it raises LookupError); gpt-sovits-cpufast reads cmudict.rep itself."""
    import re

    source = Path(GPT_SoVITS.__file__).resolve().parent / "text" / "cmudict.rep"
    d = nltk_data / "corpora" / "cmudict"
    d.mkdir(parents=True, exist_ok=True)
    with open(source, encoding="latin-1") as rep, open(d / "cmudict", "w", encoding="latin-1") as out:
        for line in rep:  # "WORD(1)  PH ON ES" -> "WORD 1 PH ON ES" (NLTK reads the word and the phones)
            word, _, phones = line.strip().partition("  ")
            if word and phones and not word.startswith(";;;"):
                word = re.sub(r"[(]\d+[)]$", "", word)
                out.write(f"{word} 1 {phones.strip()}\n")
    _zip_as_nltk_download(d, nltk_data / "corpora" / "cmudict.zip", "cmudict")  # g2p_en's import checks it too


def write_yaml(out: Path) -> None:
    import yaml

    custom = {
        "device": "cpu",
        "is_half": False,
        "version": "v2",
        "t2s_weights_path": str(out / "s1.ckpt"),
        "vits_weights_path": str(out / "s2G.pth"),
        "bert_base_path": str(out / "chinese-roberta-wwm-ext-large"),
        "cnhuhbert_base_path": str(out / "chinese-hubert-base"),
    }
    (out / "tts_infer.yaml").write_text(yaml.safe_dump({"custom": custom}, sort_keys=True), encoding="utf-8")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=0, help="different seeds give different weight sets")
    ap.add_argument("--max-sec", type=int, default=2,
                    help="t2s data.max_sec; random weights rarely emit EOS, so decoding runs ~50*max_sec tokens")
    ap.add_argument("--t2s-layers", type=int, default=2,
                    help="t2s transformer layers (24: s1longer-v2's, the real decoder's cost per token)")
    ap.add_argument("--with-enc-q", action="store_true",
                    help="also store enc_q.* (+20 MB) so SoVITS loads with no missing keys at all")
    ap.add_argument("--small-vits", action="store_true",
                    help="shrink the SoVITS vocoder/FFN (not s2G488k-shaped any more) for much faster synthesis")
    ap.add_argument("--nltk-data", default=None, metavar="DIR",
                    help="also write into DIR a stub NLTK tagger (taggers/averaged_perceptron_tagger_eng) and the CMU "
                    "dictionary in NLTK's layout (corpora/cmudict, which a GPT-SoVITS checkout's English needs); "
                    "needs nltk")
    ap.add_argument("--fp32", action="store_true", help="store fp32 (default fp16, like released checkpoints)")
    args = ap.parse_args(argv)

    out = Path(args.out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    fp16 = not args.fp32
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    steps = [
        ("s1.ckpt", lambda: make_t2s(out, args.max_sec, fp16, args.t2s_layers)),
        ("s2G.pth", lambda: make_s2(out, fp16, args.with_enc_q, args.small_vits)),
        ("bert", lambda: make_bert(out, fp16)),
        ("hubert", lambda: make_hubert(out, fp16)),
        ("ref.wav", lambda: make_ref_wav(out / "ref.wav")),
        ("tts_infer.yaml", lambda: write_yaml(out)),
    ]
    if args.nltk_data:
        nltk_data = Path(args.nltk_data).expanduser().resolve()
        steps.append(("nltk stub tagger", lambda: write_nltk_stub(nltk_data)))
        steps.append(("nltk cmudict", lambda: write_cmudict(nltk_data)))
    for name, fn in steps:
        ts = time.perf_counter()
        fn()
        print(f"  {name:<16} {time.perf_counter() - ts:6.2f} s")
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({total / 1e6:.1f} MB) seed={args.seed} in {time.perf_counter() - t0:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
