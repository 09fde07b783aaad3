"""Contracts of Reconnect: register marks, intervention events, outcomes and the DfE code table."""
