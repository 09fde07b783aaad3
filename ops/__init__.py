"""Operations configuration: topic definitions, Prometheus rules and Grafana dashboards (data, no code)."""
