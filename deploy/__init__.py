"""Deployment of the job's definitions beyond one machine (Kubernetes, Postgres): see README."""
