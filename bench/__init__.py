"""tts-cluster benchmarks: tables on stdout, JSON (and later plots) in bench/results/."""
