#![doc = include_str!("../README.md")]

mod backend;
mod build;
mod cli;
mod container;
mod failure;
mod image;
mod network;
mod output;
mod remote;
mod settings;
mod signals;
mod stats;
mod volume;

use backend::Backend;
use clap::Parser;
use kleene_api::client::{Client, TlsOptions};
use kleene_core::kleene_zfs::DatasetName;
use kleene_core::{Config, Engine, Events};

use cli::{Cli, Command, ContainerCmd, ImageCmd, NetworkCmd, Theme, VolumeCmd};
use failure::{Failure, Outcome};

fn main() {
    // Containers are run by klee itself, started again as their monitor.
    kleene_core::init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("klee: cannot start the async runtime: {e}");
            std::process::exit(failure::FAILED);
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("klee: {}", f.message);
            }
            f.code
        }
    };
    // Exit at once: a task still reading stdin (exec -i) must not hold the process.
    std::process::exit(code);
}

/// What every command needs: how to reach the engine (or kleened), and the theme.
#[derive(Debug)]
pub struct Ctx {
    root: Option<String>,
    config: Option<std::path::PathBuf>,
    /// `--host`: work through this kleened.
    host: Option<String>,
    tls: TlsOptions,
    pub theme: Theme,
}

impl Ctx {
    /// The engine, or the kleened of `--host`.
    pub async fn backend(&self) -> Result<Backend, Failure> {
        match self.client()? {
            Some(c) => Ok(Backend::Remote(c)),
            None => Ok(Backend::Local(self.engine().await?)),
        }
    }

    /// The client of the kleened of `--host`, if one is given.
    pub fn client(&self) -> Result<Option<Client>, Failure> {
        self.host
            .as_deref()
            .map(|h| Client::new(h, &self.tls).map_err(|e| Failure::usage(e.to_string())))
            .transpose()
    }

    /// Whether klee works through a kleened.
    pub fn remote(&self) -> bool {
        self.host.is_some()
    }

    /// Refuses `what` with `--host`: kleened's API has no such operation.
    pub fn local_only(&self, what: &str) -> Result<(), Failure> {
        if self.host.is_some() {
            return Err(Failure::usage(format!(
                "{what} works on the engine itself: kleened's API has no such operation (drop --host)"
            )));
        }
        Ok(())
    }

    /// Opens the engine on the root dataset; repairs are told on stderr.
    pub async fn engine(&self) -> Result<Engine, Failure> {
        // Every command takes its remote path before it would open the engine.
        self.local_only("this command")?;
        let env = std::env::var("KLEENE_ROOT").ok();
        let settings =
            settings::load(self.root.as_deref(), env.as_deref(), self.config.as_deref())?;
        let root = settings.root;
        let root = DatasetName::new(root.as_str())
            .map_err(|e| Failure::usage(format!("invalid root dataset {root:?}: {e}")))?;
        let events = Events::new(|e| match e {
            kleene_core::Event::Repaired(text) => eprintln!("klee: repaired: {text}"),
            kleene_core::Event::NotRepaired(text) => eprintln!("klee: not repaired: {text}"),
            _ => {}
        });
        let mut config = Config::new(root);
        config.registries = settings.registries;
        config.userns = settings.userns;
        let (engine, _) = Engine::open_with(config, events).await?;
        Ok(engine)
    }
}

async fn run(cli: Cli) -> Outcome {
    let tls = TlsOptions {
        verify: cli.tlsverify && !cli.no_tlsverify,
        ca: cli.tlscacert,
        cert: cli.tlscert,
        key: cli.tlskey,
    };
    let ctx = Ctx {
        root: cli.root,
        config: cli.config,
        host: cli.host.filter(|h| !h.is_empty()),
        tls,
        theme: cli.theme,
    };
    match cli.command {
        Command::Image(cmd) => image_cmd(&ctx, cmd).await,
        Command::Container(cmd) => container_cmd(&ctx, cmd).await,
        Command::Volume(cmd) => volume_cmd(&ctx, cmd).await,
        Command::Network(cmd) => network_cmd(&ctx, cmd).await,
        Command::Isn(a) => network::inspect(&ctx, a).await,
        Command::Lsn(a) => network::ls(&ctx, a).await,
        Command::Rmn(a) => network::rm(&ctx, a).await,
        Command::Build(a) => build::build(&ctx, a).await,
        Command::Create(a) => container::create(&ctx, a).await,
        Command::Exec(a) => container::exec(&ctx, a).await,
        Command::Start(a) => container::start(&ctx, a).await,
        Command::Stop(a) => container::stop(&ctx, a).await,
        Command::Restart(a) => container::restart(&ctx, a).await,
        Command::Run(a) => container::run(&ctx, a).await,
        Command::Pull(a) => image::pull(&ctx, a).await,
        Command::Push(a) => image::push(&ctx, a).await,
        Command::Logs(a) => container::logs(&ctx, a).await,
        Command::Isc(a) => container::inspect(&ctx, a).await,
        Command::Isi(a) => image::inspect(&ctx, a).await,
        Command::Isv(a) => volume::inspect(&ctx, a).await,
        Command::Lsc(a) => container::ls(&ctx, a).await,
        Command::Lsi(a) => image::ls(&ctx, a).await,
        Command::Lsv(a) => volume::ls(&ctx, a).await,
        Command::Rmc(a) => container::rm(&ctx, a).await,
        Command::Rmi(a) => image::rm(&ctx, a).await,
        Command::Rmv(a) => volume::rm(&ctx, a).await,
    }
}

async fn image_cmd(ctx: &Ctx, cmd: ImageCmd) -> Outcome {
    match cmd {
        ImageCmd::Create(a) => image::create(ctx, a).await,
        ImageCmd::Load(a) => image::load(ctx, a).await,
        ImageCmd::Pull(a) => image::pull(ctx, a).await,
        ImageCmd::Push(a) => image::push(ctx, a).await,
        ImageCmd::Save(a) => image::save(ctx, a).await,
        ImageCmd::Build(a) => build::build(ctx, a).await,
        ImageCmd::Ls(a) => image::ls(ctx, a).await,
        ImageCmd::Inspect(a) => image::inspect(ctx, a).await,
        ImageCmd::Rm(a) => image::rm(ctx, a).await,
        ImageCmd::Prune(a) => image::prune(ctx, a).await,
        ImageCmd::Tag(a) => image::tag(ctx, a).await,
    }
}

async fn container_cmd(ctx: &Ctx, cmd: ContainerCmd) -> Outcome {
    match cmd {
        ContainerCmd::Create(a) => container::create(ctx, a).await,
        ContainerCmd::Run(a) => container::run(ctx, a).await,
        ContainerCmd::Start(a) => container::start(ctx, a).await,
        ContainerCmd::Stop(a) => container::stop(ctx, a).await,
        ContainerCmd::Restart(a) => container::restart(ctx, a).await,
        ContainerCmd::Exec(a) => container::exec(ctx, a).await,
        ContainerCmd::Ls(a) => container::ls(ctx, a).await,
        ContainerCmd::Inspect(a) => container::inspect(ctx, a).await,
        ContainerCmd::Rm(a) => container::rm(ctx, a).await,
        ContainerCmd::Prune(a) => container::prune(ctx, a).await,
        ContainerCmd::Rename(a) => container::rename(ctx, a).await,
        ContainerCmd::Update(a) => container::update(ctx, a).await,
        ContainerCmd::Logs(a) => container::logs(ctx, a).await,
        ContainerCmd::Stats(a) => crate::stats::stats(ctx, a).await,
    }
}

async fn volume_cmd(ctx: &Ctx, cmd: VolumeCmd) -> Outcome {
    match cmd {
        VolumeCmd::Create(a) => volume::create(ctx, a).await,
        VolumeCmd::Ls(a) => volume::ls(ctx, a).await,
        VolumeCmd::Inspect(a) => volume::inspect(ctx, a).await,
        VolumeCmd::Rm(a) => volume::rm(ctx, a).await,
        VolumeCmd::Prune(a) => volume::prune(ctx, a).await,
    }
}

async fn network_cmd(ctx: &Ctx, cmd: NetworkCmd) -> Outcome {
    match cmd {
        NetworkCmd::Create(a) => network::create(ctx, a).await,
        NetworkCmd::Ls(a) => network::ls(ctx, a).await,
        NetworkCmd::Inspect(a) => network::inspect(ctx, a).await,
        NetworkCmd::Rm(a) => network::rm(ctx, a).await,
        NetworkCmd::Prune(a) => network::prune(ctx, a).await,
        NetworkCmd::Connect(a) => network::connect(ctx, a).await,
        NetworkCmd::Disconnect(a) => network::disconnect(ctx, a).await,
    }
}

/// Prints `value` as indented JSON on stdout, as klee prints it with `theme`.
pub fn print_json(theme: Theme, value: &impl serde::Serialize) -> Outcome {
    let text = output::json_text(theme, value)
        .map_err(|e| Failure::failed(format!("cannot write JSON: {e}")))?;
    println!("{text}");
    Ok(0)
}

/// Runs `op` on each target, printing what it returns (an id or name) on stdout and each
/// failure as its own line on stderr; exit 1 if any failed.
pub async fn each<F, Fut>(targets: &[String], mut op: F) -> Outcome
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<String, Failure>>,
{
    let mut code = 0;
    for t in targets {
        match op(t.clone()).await {
            Ok(done) => println!("{done}"),
            Err(f) => {
                eprintln!("klee: {}", f.message);
                code = code.max(f.code);
            }
        }
    }
    Ok(code)
}

/// Asks before a prune unless `force`, on stdout as klee does; a refusal prints click's
/// `Aborted!` on stderr and fails the command (exit 1) with nothing removed.
pub fn confirm_prune(force: bool, warning: &str) -> Result<(), Failure> {
    if force {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if output::confirm(warning, &mut stdin.lock(), &mut std::io::stdout())? {
        Ok(())
    } else {
        eprintln!("Aborted!");
        Err(Failure::reported(failure::FAILED))
    }
}

/// Prints what a prune removed, as klee prints the list.
pub fn print_pruned(ids: &[String]) {
    print!("{}", output::id_list(ids));
}
