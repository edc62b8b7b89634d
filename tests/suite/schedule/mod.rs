//! Who checks what, when: scrape and interval mode, readiness and a scrape's wait
//! (`modes`), and sharding across replicas (`sharding`).

mod modes;
mod sharding;
