"""The `tts-cluster` command."""
