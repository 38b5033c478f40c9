"""Stage 4: what people read: summary tables in the terminal, HTML reports with charts."""
