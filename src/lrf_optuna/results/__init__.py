"""After the search: trial selection, fine-tuning, records, reports, compress_trial."""
