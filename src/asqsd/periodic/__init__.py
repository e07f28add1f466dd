"""Periodic tasks: cron.yaml, leader election on DynamoDB, and exactly-once enqueueing."""
