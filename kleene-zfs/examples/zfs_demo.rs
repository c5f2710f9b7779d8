//! The model Kleene stands on, shown on a pool: an image is a snapshot, a container is a
//! clone of it, and a clone costs nothing until it is written to.
//!
//! `cargo run -p kleene-zfs --example zfs_demo -- POOL`

use std::fs;

use anyhow::{bail, Context, Result};
use kleene_zfs::{DatasetName, Depth, Properties, Zfs};

fn main() -> Result<()> {
    let Some(pool) = std::env::args().nth(1) else {
        bail!("usage: zfs_demo POOL");
    };
    let zfs = Zfs::open();
    println!(
        "zfs backend: {} ({})",
        zfs.backend_name(),
        zfs.backend_reason()
    );

    let root = DatasetName::new(pool)?.child("kleene-demo")?;
    if zfs.exists(&root)? {
        for d in zfs
            .list_datasets(&root, Depth::All, &["origin"])?
            .iter()
            .rev()
        {
            if d.properties.get("origin").is_some() {
                zfs.destroy(&d.name, true)?;
            }
        }
        zfs.destroy(&root, true)?;
    }
    zfs.create(&root, &Properties::new())?;

    let image = root.child("image")?;
    zfs.create(&image, &Properties::new().with("kleene:name", "demo")?)?;
    let mp = zfs.mountpoint(&image)?.context("image is not mounted")?;
    fs::write(mp.join("hello.txt"), "hello from the image\n")?;
    let snap = image.snapshot("image")?;
    zfs.snapshot(&snap, &Properties::new())?;
    println!("created image {image} and its snapshot {snap}");

    for name in ["web", "db"] {
        let c = root.child(name)?;
        zfs.clone_snapshot(&snap, &c, &Properties::new().with("kleene:name", name)?)?;
        let cmp = zfs.mountpoint(&c)?.context("clone is not mounted")?;
        fs::write(
            cmp.join(format!("{name}.txt")),
            format!("written in {name}\n"),
        )?;
        println!(
            "cloned {c} at {}: sees {:?}",
            cmp.display(),
            fs::read_to_string(cmp.join("hello.txt"))?.trim()
        );
    }

    println!("\n{:<40} {:>10}  ORIGIN", "NAME", "USED");
    for d in zfs.list_datasets(&root, Depth::All, &["used", "origin"])? {
        println!(
            "{:<40} {:>10}  {}",
            d.name.to_string(),
            d.properties.get("used").unwrap_or("-"),
            d.properties.get("origin").unwrap_or("-")
        );
    }
    let clones = zfs.clones(&snap)?;
    println!(
        "\nclones of {snap}: {}",
        clones
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
