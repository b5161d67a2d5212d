"""The `memsys` command line (also `python -m memsys`). `main` builds the parser and hands
each command module the subparsers to add its groups to; a command module never imports
`main` or another command module, and what two of them share (following a job) lives in
`follow`. Every command calls the engine, nothing else."""
