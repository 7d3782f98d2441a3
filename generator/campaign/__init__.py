"""Campaigns: the spec (torch-free) and the runner (audience -> rank -> prompt -> write -> check -> choose -> save)."""
