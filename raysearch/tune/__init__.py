"""Ray glue: search spaces, the Tune driver, the Train trial and the Ray Data stream."""
