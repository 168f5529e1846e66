"""Blueprints: pages (upload, jobs), admin, JSON API, signed file routes, webhooks."""
