"""tts-cluster router: the one public entry in front of every worker. Light: no torch, no engine code."""
