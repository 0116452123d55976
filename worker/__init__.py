"""tts-cluster worker: one TTS engine on one device behind the GPT-SoVITS api_v2 HTTP contract."""
