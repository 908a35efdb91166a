"""The command line: argument parsing and output (``main``), running many files
(``runner``) and the result cache (``cache``)."""
