"""The route and assignment feeds (docs/feeds.md): derivation, hubs, follower streams."""
