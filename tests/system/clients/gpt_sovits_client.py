"""A client written against the original GPT-SoVITS api_v2, unchanged: the way such scripts usually look.

Usage: python gpt_sovits_client.py BASE_URL OUT_DIR
"""

import json
import sys
import urllib.parse
import urllib.request

base, out = sys.argv[1], sys.argv[2]

# 1. GET with query parameters, as api_v2's docstring shows.
query = urllib.parse.urlencode({
    "text": "Hello, this is a test.",
    "text_lang": "en",
    "ref_audio_path": "reference.wav",
    "prompt_lang": "en",
    "prompt_text": "",
    "text_split_method": "cut5",
    "batch_size": 1,
    "media_type": "wav",
    "streaming_mode": "false",
})
with urllib.request.urlopen(f"{base}/tts?{query}") as resp:
    assert resp.status == 200, resp.status
    open(f"{out}/get.wav", "wb").write(resp.read())

# 2. POST with the JSON body api_v2 documents, every parameter spelled out.
body = {
    "text": "The quick brown fox jumps over the lazy dog.",
    "text_lang": "en",
    "ref_audio_path": "reference.wav",
    "aux_ref_audio_paths": [],
    "prompt_text": "",
    "prompt_lang": "en",
    "top_k": 15,
    "top_p": 1,
    "temperature": 1,
    "text_split_method": "cut5",
    "batch_size": 1,
    "batch_threshold": 0.75,
    "split_bucket": True,
    "speed_factor": 1.0,
    "fragment_interval": 0.3,
    "seed": -1,
    "media_type": "wav",
    "streaming_mode": False,
    "parallel_infer": True,
    "repetition_penalty": 1.35,
    "sample_steps": 32,
    "super_sampling": False,
}
req = urllib.request.Request(
    f"{base}/tts", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
)
with urllib.request.urlopen(req) as resp:
    open(f"{out}/post.wav", "wb").write(resp.read())

# 3. Streaming: read the chunked body as it comes.
body.update(streaming_mode=True, text="First sentence. Second sentence.")
req = urllib.request.Request(
    f"{base}/tts", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
)
with urllib.request.urlopen(req) as resp, open(f"{out}/stream.wav", "wb") as f:
    while chunk := resp.read(4096):
        f.write(chunk)

# 4. An error: the client reads api_v2's {"message": ...}.
bad = urllib.parse.urlencode({"text": "hi", "text_lang": "en", "prompt_lang": "en"})
try:
    urllib.request.urlopen(f"{base}/tts?{bad}")
    raise SystemExit("expected an error")
except urllib.error.HTTPError as err:
    assert err.code == 400
    print(json.loads(err.read())["message"])
