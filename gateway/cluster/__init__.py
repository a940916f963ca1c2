"""Several gateway instances, one owner per PBX link: a lease per PBX in Redis.

``settings`` is the ``cluster:`` config section, ``lease`` the Redis lease, ``owner`` the loop
that runs each PBX's AMI link only in the instance holding its lease (docs/scale-out.md).
"""
