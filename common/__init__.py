"""Shared pieces of tts-cluster: wire schemas and structured logging (no engine, no torch)."""
