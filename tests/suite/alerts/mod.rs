//! Alerts and dashboards: the shipped rules and their promtool unit tests (`rules`), a real
//! Prometheus scraping the exporter (`prometheus`), a real Alertmanager routing what fires
//! (`alertmanager`), and the runbooks the alerts link to (`runbooks`).

mod alertmanager;
mod prometheus;
mod rules;
mod runbooks;
