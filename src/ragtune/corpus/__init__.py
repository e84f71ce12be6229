"""Files and LlamaIndex ``Document``s → chunks with stable ids."""
