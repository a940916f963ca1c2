"""Call tracking: AMI events in, calls out (model, events, tracker, replay)."""
