//! Who checks what, when: sharding across replicas (`sharding`). Scrape and interval mode
//! against real registries are in `verdicts::real_registries`.

mod sharding;
