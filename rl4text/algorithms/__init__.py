"""On-policy algorithms: each is a config dataclass plus an update (see ``base.Algorithm``)."""
