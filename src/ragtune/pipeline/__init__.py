"""The whole job as resumable stages over one run directory."""
