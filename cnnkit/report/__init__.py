"""The self-contained HTML report of a run (``html.write_report``)."""
