"""Worker clients: the request/result types and the lean and aiohttp implementations."""
