"""Sources: where a saved source's documents come from (a folder on the server, a git
repository, an S3 bucket, a website, a mailbox, a WebDAV folder). Each kind is a
connector (`memsys.ingest.sources.base.Connector`) that lists the source's documents with a
version each and fetches one into a folder; the sync (memsys.jobs.sources) decides what to
fetch and runs the mirror import.
"""
