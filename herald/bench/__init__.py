"""`herald bench`: Herald's throughput and freshness against baselines run on the same data."""
