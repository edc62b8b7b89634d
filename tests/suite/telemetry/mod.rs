//! The exporter's own telemetry: OTLP spans and log lines in each format (`otlp`).

mod otlp;
