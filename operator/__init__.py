"""tts-cluster operator: reconciles TTSCluster resources into router and worker pods (imported as tts_operator)."""
