"""Where users run models: TFLite export, measured latency, the latency table, bench."""
