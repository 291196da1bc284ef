"""Events: datagram formats and the clock (frames), receive backends (receivers), the sequencer, the journal, and ingest in its own process (ingest, ingest_child, ingest_stats)."""
