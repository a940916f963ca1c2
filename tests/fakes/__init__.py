"""Stand-in servers for systems that cannot run here (vendor CRMs), as real aiohttp apps."""
