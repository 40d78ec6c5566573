"""Speech emotion recognition: frozen Whisper encoder features + prosody -> emotion and arousal, a text-side
signal, their fusion, and call-level trajectories with escalation alerts."""
