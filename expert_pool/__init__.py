"""The expert pool (权威专家队伍) and the review queue."""
