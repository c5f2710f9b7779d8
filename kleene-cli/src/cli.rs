//! The command line, as klee has it: `klee <object> <verb>` and the shortcuts.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kleene_core::{Driver, JailParamText, NetworkType, PublishedPort};

/// klee: images, containers and volumes on ZFS, without a daemon (or through kleened,
/// with --host).
#[derive(Debug, Parser)]
#[command(name = "klee", version)]
pub struct Cli {
    /// The root dataset of kleene [default: $KLEENE_ROOT, then `root` of the config
    /// file, then zroot/kleene]
    #[arg(
        long,
        global = true,
        value_name = "DATASET",
        help_heading = "Global options"
    )]
    pub root: Option<String>,
    /// Location of the config file [default: /etc/kleene/kleene.toml on Linux,
    /// /usr/local/etc/kleene/kleene.toml on FreeBSD]
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help_heading = "Global options"
    )]
    pub config: Option<PathBuf>,
    /// Theme used for klee's tables: 'fancy' (unicode rules) or 'simple' (ASCII)
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = Theme::Fancy,
        env = "KLEE_THEME",
        help_heading = "Global options"
    )]
    pub theme: Theme,
    /// A kleened to work through: http:///path/to/kleened.sock, http://HOST:PORT or
    /// https://HOST:PORT [default: none, klee works on the engine itself]
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "KLEE_HOST",
        help_heading = "Global options"
    )]
    pub host: Option<String>,
    /// Verify kleened's certificate (https), with the Mozilla CA bundle unless
    /// --tlscacert is set
    #[arg(
        long,
        global = true,
        env = "KLEE_TLS_VERIFY",
        overrides_with = "no_tlsverify",
        help_heading = "Global options"
    )]
    pub tlsverify: bool,
    /// Do not verify kleened's certificate [default]
    #[arg(
        long,
        global = true,
        overrides_with = "tlsverify",
        help_heading = "Global options"
    )]
    pub no_tlsverify: bool,
    /// Path to TLS certificate file used for client authentication (PEM encoded)
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "KLEE_TLS_CERT",
        help_heading = "Global options"
    )]
    pub tlscert: Option<PathBuf>,
    /// Path to TLS key file used for the --tlscert certificate (PEM encoded)
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "KLEE_TLS_KEY",
        help_heading = "Global options"
    )]
    pub tlskey: Option<PathBuf>,
    /// Trust certs signed only by this CA (PEM encoded); implies --tlsverify
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "KLEE_TLS_CACERT",
        help_heading = "Global options"
    )]
    pub tlscacert: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// How tables are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Theme {
    Fancy,
    Simple,
}

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCmd),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCmd),
    /// Manage networks
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Manage volumes
    #[command(subcommand)]
    Volume(VolumeCmd),

    /// Build a new image (shortcut for `image build`)
    Build(BuildArgs),
    /// Pull an image from a registry (shortcut for `image pull`)
    Pull(PullArgs),
    /// Push images to a registry (shortcut for `image push`)
    Push(PushArgs),
    /// Create a new container (shortcut for `container create`)
    Create(CreateArgs),
    /// Run a command in a container (shortcut for `container exec`)
    Exec(ExecArgs),
    /// Start one or more stopped containers (shortcut for `container start`)
    Start(StartArgs),
    /// Stop one or more running containers (shortcut for `container stop`)
    Stop(StopArgs),
    /// Restart one or more containers (shortcut for `container restart`)
    Restart(StopArgs),
    /// Run a command in a new container (shortcut for `container run`)
    Run(RunArgs),
    /// Show what a detached container wrote (shortcut for `container logs`)
    Logs(LogsArgs),

    /// Inspect a container (shortcut for `container inspect`)
    Isc(InspectArgs),
    /// Inspect an image (shortcut for `image inspect`)
    Isi(InspectArgs),
    /// Inspect a network (shortcut for `network inspect`)
    Isn(InspectArgs),
    /// Inspect a volume (shortcut for `volume inspect`)
    Isv(InspectArgs),

    /// List containers (shortcut for `container ls`)
    Lsc(ContainerLsArgs),
    /// List images (shortcut for `image ls`)
    Lsi(ListArgs),
    /// List networks (shortcut for `network ls`)
    Lsn(ListArgs),
    /// List volumes (shortcut for `volume ls`)
    Lsv(ListArgs),

    /// Remove containers (shortcut for `container rm`)
    Rmc(ContainerRmArgs),
    /// Remove images (shortcut for `image rm`)
    Rmi(RmArgs),
    /// Remove networks (shortcut for `network rm`)
    Rmn(RmArgs),
    /// Remove volumes (shortcut for `volume rm`)
    Rmv(RmArgs),
}

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// Create a new base image
    Create(ImageCreateArgs),
    /// Create an image from an OCI image layout directory (its layers applied in order)
    Load(ImageLoadArgs),
    /// Pull an image from a registry
    Pull(PullArgs),
    /// Push an image to a registry (several images: a multi-platform index of them)
    Push(PushArgs),
    /// Save an image as an OCI image layout (a directory, or a .tar/.tar.gz/.txz/.tar.zst
    /// archive)
    Save(SaveArgs),
    /// Build a new image
    Build(BuildArgs),
    /// List images
    Ls(ListArgs),
    /// Display detailed information on an image
    Inspect(InspectArgs),
    /// Remove one or more images
    Rm(RmArgs),
    /// Remove images that are not being used by containers
    Prune(ImagePruneArgs),
    /// Rename an image
    Tag(TagArgs),
}

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum ContainerCmd {
    /// Create a new container
    Create(CreateArgs),
    /// Run a command in a new container
    Run(RunArgs),
    /// Start one or more stopped containers
    Start(StartArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Restart one or more containers
    Restart(StopArgs),
    /// Run a command in a running container
    Exec(ExecArgs),
    /// List containers
    Ls(ContainerLsArgs),
    /// Display detailed information on a container
    Inspect(InspectArgs),
    /// Remove one or more containers
    Rm(ContainerRmArgs),
    /// Remove all stopped containers
    Prune(PruneArgs),
    /// Rename a container
    Rename(RenameArgs),
    /// Modify a container (limits apply at once to a running one)
    Update(UpdateArgs),
    /// Show the resource use of running containers
    Stats(StatsArgs),
    /// Show what a detached container wrote
    Logs(LogsArgs),
}

#[derive(Debug, Subcommand)]
pub enum VolumeCmd {
    /// Create a new volume
    Create(VolumeCreateArgs),
    /// List volumes
    #[command(visible_alias = "lsv")]
    Ls(ListArgs),
    /// Display detailed information on a volume
    Inspect(InspectArgs),
    /// Remove one or more volumes
    Rm(RmArgs),
    /// Remove all volumes that are not used by any containers
    Prune(PruneArgs),
}

#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// Create a new network
    Create(NetworkCreateArgs),
    /// List networks
    #[command(visible_alias = "lsn")]
    Ls(ListArgs),
    /// Display detailed information on a network
    Inspect(InspectArgs),
    /// Remove one or more networks
    Rm(RmArgs),
    /// Remove all networks no container is connected to
    Prune(PruneArgs),
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
}

#[derive(Debug, Args)]
pub struct NetworkCreateArgs {
    /// What kind of network should be created: 'bridge', 'loopback' or 'custom'
    #[arg(short = 't', long = "type", default_value = "loopback")]
    pub kind: NetworkType,
    /// Name of the interface used on the host for the network [default: 'kleene' and a number]
    #[arg(short, long)]
    pub interface: Option<String>,
    /// Subnet in CIDR format for the network
    #[arg(long)]
    pub subnet: Option<ipnet::Ipv4Net>,
    /// IPv6 subnet in CIDR format for the network
    #[arg(long)]
    pub subnet6: Option<ipnet::Ipv6Net>,
    /// Bridge networks: the default IPv4 router of containers ('auto': the subnet's
    /// first address; "": none)
    #[arg(long = "gw", default_value = "auto")]
    pub gw: String,
    /// Bridge networks: the default IPv6 router of containers (see --gw)
    #[arg(long = "gw6", default_value = "auto")]
    pub gw6: String,
    /// NAT the network's outgoing traffic [default]
    #[arg(long, overrides_with = "no_nat")]
    pub nat: bool,
    /// Do not NAT the network's outgoing traffic
    #[arg(long, overrides_with = "nat")]
    pub no_nat: bool,
    /// The interface to NAT to [default: the host's gateway interface]
    #[arg(long = "nat-if")]
    pub nat_if: Option<String>,
    /// Connectivity between containers within the network [default: true]
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub icc: bool,
    /// Do not let traffic leave the network
    #[arg(long)]
    pub internal: bool,
    /// The network's name
    pub name: String,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// IPv4 address of the container [default: a free one]
    #[arg(long)]
    pub ip: Option<std::net::Ipv4Addr>,
    /// IPv6 address of the container [default: a free one]
    #[arg(long)]
    pub ip6: Option<std::net::Ipv6Addr>,
    /// The network
    pub network: String,
    /// The container
    pub container: String,
}

#[derive(Debug, Args)]
pub struct DisconnectArgs {
    /// The network
    pub network: String,
    /// The container
    pub container: String,
}

/// How lists are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// A table, as klee prints it
    Table,
    /// A JSON array
    Json,
}

/// How inspections are printed: JSON, as klee prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InspectFormat {
    /// Indented JSON
    Json,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

#[derive(Debug, Args)]
pub struct ContainerLsArgs {
    /// Show all containers (default only shows running containers)
    #[arg(short, long)]
    pub all: bool,
    #[command(flatten)]
    pub list: ListArgs,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The object: id, unique id prefix or name
    pub target: String,
    /// Output format
    #[arg(long, value_enum, default_value_t = InspectFormat::Json)]
    pub format: InspectFormat,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// The objects to remove
    #[arg(required = true)]
    pub targets: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ContainerRmArgs {
    /// Stop containers before removing them
    #[arg(short, long)]
    pub force: bool,
    /// The containers to remove
    #[arg(required = true)]
    pub targets: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ImagePruneArgs {
    /// Remove tagged images as well
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    /// The image: id, unique id prefix or name[:tag]
    pub source_image: String,
    /// The new name[:tag] (the tag is `latest` when omitted)
    pub nametag: String,
}

/// How a base image is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Method {
    /// Fetch the host's FreeBSD release from the official mirrors; SOURCE is not used
    FetchAuto,
    /// Fetch a tar archive (http, https, file:// or a path) given as SOURCE
    Fetch,
    /// Copy the ZFS dataset SOURCE
    ZfsCopy,
    /// Clone the ZFS dataset SOURCE
    ZfsClone,
}

#[derive(Debug, Args)]
pub struct ImageCreateArgs {
    /// fetch-auto, fetch, zfs-copy or zfs-clone
    #[arg(value_enum)]
    pub method: Method,
    /// The archive (fetch) or dataset (zfs-copy, zfs-clone)
    pub source: Vec<String>,
    /// Name and optionally a tag in the 'name:tag' format
    #[arg(short, long)]
    pub tag: Option<String>,
    /// Copy /etc/resolv.conf from the host into the new image [default]
    #[arg(long, overrides_with = "no_dns")]
    pub dns: bool,
    /// Do not copy /etc/resolv.conf
    #[arg(long, overrides_with = "dns")]
    pub no_dns: bool,
    /// Copy /etc/localtime from the host into the new image, if it exists [default]
    #[arg(long, overrides_with = "no_localtime")]
    pub localtime: bool,
    /// Do not copy /etc/localtime
    #[arg(long, overrides_with = "localtime")]
    pub no_localtime: bool,
    /// Update the userland with freebsd-update(8) (not supported yet)
    #[arg(long, overrides_with = "no_update")]
    pub update: bool,
    /// Do not update the userland [default]
    #[arg(long, overrides_with = "update")]
    pub no_update: bool,
    /// Name it 'FreeBSD-<version>:latest' when no tag is given (fetch-auto only) [default]
    #[arg(short, long, overrides_with = "no_autotag")]
    pub autotag: bool,
    /// Do not autogenerate a nametag
    #[arg(long, overrides_with = "autotag")]
    pub no_autotag: bool,
    /// The archive's expected SHA-256 (fetch only)
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImageLoadArgs {
    /// The layout directory, and after a ':' the name its index gives the image (needed
    /// when it holds several)
    #[arg(value_name = "PATH[:NAME]")]
    pub source: String,
    /// Name and optionally a tag in the 'name:tag' format
    #[arg(short, long)]
    pub tag: Option<String>,
    /// The platform to take from a multi-platform image, os/arch[/variant] [default: the
    /// host's]
    #[arg(long)]
    pub platform: Option<String>,
    /// Do not copy /etc/resolv.conf from the host into the new image
    #[arg(long)]
    pub no_dns: bool,
    /// Do not copy /etc/localtime from the host into the new image
    #[arg(long)]
    pub no_localtime: bool,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// The image: [REGISTRY/]REPOSITORY[:TAG][@DIGEST] (registries on loopback addresses
    /// are spoken to over http)
    #[arg(value_name = "REFERENCE")]
    pub reference: String,
    /// Name and optionally a tag in the 'name:tag' format [default: the reference's]
    #[arg(short, long)]
    pub tag: Option<String>,
    /// The platform to take from a multi-platform image, os/arch[/variant] [default: the
    /// host's]
    #[arg(long)]
    pub platform: Option<String>,
    /// Do not copy /etc/resolv.conf from the host into the new image
    #[arg(long)]
    pub no_dns: bool,
    /// Do not copy /etc/localtime from the host into the new image
    #[arg(long)]
    pub no_localtime: bool,
    /// Pull only if a signature verifies with this public key: PEM for cosign
    /// signatures in the registry, OpenPGP for simple signatures (repeatable: any key)
    #[arg(long = "verify-key", value_name = "PATH")]
    pub verify_keys: Vec<std::path::PathBuf>,
    /// The lookaside store (a directory) of simple signatures
    #[arg(long, value_name = "DIR")]
    pub lookaside: Option<String>,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The images, then where to push: IMAGE [IMAGE...] [REGISTRY/]REPOSITORY[:TAG]
    #[arg(value_name = "IMAGE... REFERENCE", num_args = 2.., required = true)]
    pub args: Vec<String>,
    /// Sign what is pushed with this private key: a cosign key (PEM; the signature goes
    /// to the registry) or an OpenPGP secret key (a simple signature, into --lookaside)
    #[arg(long, value_name = "PATH")]
    pub sign_key: Option<std::path::PathBuf>,
    /// A file holding the signing key's passphrase
    #[arg(long, value_name = "PATH", requires = "sign_key")]
    pub sign_passphrase_file: Option<std::path::PathBuf>,
    /// The lookaside store (a directory) simple signatures are written to
    #[arg(long, value_name = "DIR")]
    pub lookaside: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// The image
    pub image: String,
    /// Where: a layout directory (made, or added to), or an archive by its extension
    /// (.tar, .tar.gz, .tgz, .tar.xz, .txz, .tar.zst)
    #[arg(short, long, value_name = "PATH")]
    pub output: std::path::PathBuf,
    /// The name the layout's index gives the image [default: the image's tag]
    #[arg(long)]
    pub name: Option<String>,
    /// Clamp modification times to this Unix time, for reproducible layers
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
    pub source_date_epoch: Option<i64>,
}

/// What a container runs and how: `create`, `run`, and the build container of `build`.
#[derive(Debug, Args)]
pub struct ContainerOpts {
    /// Default user that runs commands in the container
    #[arg(short, long)]
    pub user: Option<String>,
    /// Set environment variables (e.g. `--env FIRST=SomeValue --env SECOND=AnotherValue`)
    #[arg(short, long = "env", value_name = "VAR=VALUE")]
    pub env: Vec<String>,
    /// Mount a volume or host directory: SOURCE:DESTINATION[:rw|ro]
    #[arg(short, long = "mount", value_name = "SOURCE:DESTINATION[:rw|ro]")]
    pub mount: Vec<String>,
    /// Set jail parameters
    #[arg(short = 'J', long = "jailparam")]
    pub jailparam: Vec<JailParamText>,
    /// Network driver of the container: 'ipnet', 'vnet', 'host' or 'disabled' [default:
    /// 'ipnet' with --network, else 'host']
    #[arg(short = 'l', long)]
    pub driver: Option<Driver>,
    /// Connect the container to a network
    #[arg(short = 'n', long)]
    pub network: Option<String>,
    /// IPv4 address of the container on --network [default: a free one]
    #[arg(long, requires = "network")]
    pub ip: Option<std::net::Ipv4Addr>,
    /// IPv6 address of the container on --network [default: a free one]
    #[arg(long, requires = "network")]
    pub ip6: Option<std::net::Ipv6Addr>,
}

/// Resource limits, with Docker's names (an extension of Kleene's options).
#[derive(Debug, Args, Default, Clone)]
pub struct LimitOpts {
    /// Memory limit, e.g. 256m or 1g (killed when over it)
    #[arg(long, value_name = "BYTES")]
    pub memory: Option<String>,
    /// Memory plus swap, e.g. 512m; -1 for unlimited swap [default: twice --memory]
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// CPUs it may use, e.g. 0.5 for half of one
    #[arg(long, value_name = "CPUS")]
    pub cpus: Option<f64>,
    /// Relative CPU weight (1024 is the default weight)
    #[arg(long, value_name = "SHARES")]
    pub cpu_shares: Option<u64>,
    /// CPUs it may run on, e.g. 0-2,4
    #[arg(long, value_name = "LIST")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes it may use, e.g. 0
    #[arg(long, value_name = "LIST")]
    pub cpuset_mems: Option<String>,
    /// Most processes at once; -1 for unlimited
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
}

/// Container options `create` and `run` have beyond those of the build container.
#[derive(Debug, Args)]
pub struct CreateOpts {
    #[command(flatten)]
    pub container: ContainerOpts,
    #[command(flatten)]
    pub limits: LimitOpts,
    /// Security options, as Docker's: seccomp=unconfined, or seccomp=PROFILE.json (a
    /// profile in Docker's format) [default: Docker's default seccomp profile on Linux]
    #[arg(long = "security-opt", value_name = "seccomp=unconfined|PROFILE")]
    pub security_opt: Vec<String>,
    /// User namespace (Linux): 'host' for none, or HOST_ID[:SIZE] to map container root to
    /// host id HOST_ID (65536 ids by default) [default: the config file's `userns`, else
    /// 'host']
    #[arg(long, value_name = "host|HOST_ID[:SIZE]")]
    pub userns: Option<String>,
    /// The working directory of the command [default: the image's]
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Do not remove this container when pruning
    #[arg(short = 'P', long)]
    pub persist: bool,
    /// Restarting policy of the container: 'no', or 'on-startup' (start it each time the
    /// Kleene daemon starts)
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Publish a container's port on the host: [INTERFACE:]HOST_PORT[:CONTAINER_PORT][/tcp|/udp],
    /// ports or ranges N-M
    #[arg(short, long, value_name = "[IF:]HOST[:CONTAINER][/PROTO]")]
    pub publish: Vec<PublishedPort>,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub opts: CreateOpts,
    /// The image: (IMAGE_ID|IMAGE_NAME[:TAG])[@SNAPSHOT]
    pub image: String,
    /// The command [default: the image's]
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// How a start attaches.
#[derive(Debug, Args, Clone, Copy)]
pub struct AttachArgs {
    /// Do not attach: print the id and leave the container running
    #[arg(short, long)]
    pub detach: bool,
    /// Send terminal input to the container's stdin; --detach is ignored
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub opts: CreateOpts,
    #[command(flatten)]
    pub attach: AttachArgs,
    /// Remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// The image: (IMAGE_ID|IMAGE_NAME[:TAG])[@SNAPSHOT]
    pub image: String,
    /// The command [default: the image's]
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    #[command(flatten)]
    pub attach: AttachArgs,
    /// The containers; only a single one is attached to
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait for the stop signal before killing
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub timeout: u64,
    /// The containers
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub attach: AttachArgs,
    /// Set environment variables (e.g. `--env FIRST=value1 --env SECOND=value2`)
    #[arg(short, long = "env", value_name = "VAR=VALUE")]
    pub env: Vec<String>,
    /// Username or UID of the user running the process
    #[arg(short, long)]
    pub user: Option<String>,
    /// The working directory of the process
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// The container
    pub container: String,
    /// The command
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RenameArgs {
    /// The container
    pub container: String,
    /// Its new name
    pub new_name: String,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Assign a new name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Default user used when running commands in the container
    #[arg(short, long)]
    pub user: Option<String>,
    /// Set environment variables (e.g. --env FIRST=env --env SECOND=env); replaces the
    /// container's
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Set jail parameters; replaces the container's (a running container's jail takes
    /// them where the platform can)
    #[arg(short = 'J', long = "jailparam")]
    pub jailparam: Vec<JailParamText>,
    /// Do not remove this container when pruning
    #[arg(short = 'P', long)]
    pub persist: bool,
    /// Restarting policy of the container: 'no' or 'on-startup' [default: no]
    #[arg(long)]
    pub restart: Option<String>,
    #[command(flatten)]
    pub limits: LimitOpts,
    /// The container
    pub container: String,
    /// A new command
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print new figures every second until interrupted
    #[arg(long)]
    pub stream: bool,
    /// Print JSON lines instead of a table
    #[arg(long)]
    pub json: bool,
    /// The containers [default: all running]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The container
    pub container: String,
}

#[derive(Debug, Args)]
pub struct VolumeCreateArgs {
    /// The name of the volume
    pub volume_name: String,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub container: ContainerOpts,
    /// Specify an image that overrides the one of the Dockerfile's FROM
    #[arg(long)]
    pub from: Option<String>,
    /// Location of the Dockerfile relative to PATH
    #[arg(short, long, default_value = "Dockerfile")]
    pub file: String,
    /// Name and optionally a tag in the 'name:tag' format
    #[arg(short, long)]
    pub tag: Option<String>,
    /// Suppress the build output and print the image ID on success
    #[arg(short, long)]
    pub quiet: bool,
    /// Remove the image if the build fails
    #[arg(long)]
    pub rm: bool,
    /// Set build-time variables (e.g. `--build-arg FIRST=hello --build-arg SECOND=world`)
    #[arg(long = "build-arg", value_name = "VAR=VALUE")]
    pub build_arg: Vec<String>,
    /// The stage to build (name or index) [default: the last]
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Run every step, neither using nor filling the build cache
    #[arg(long)]
    pub no_cache: bool,
    /// The build context
    pub path: PathBuf,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_the_command_with_its_own_flags() {
        let cli = Cli::try_parse_from([
            "klee", "run", "-it", "--rm", "-e", "A=1", "-m", "v:/v", "bb", "ls", "-l", "/",
        ])
        .unwrap();
        let Command::Run(r) = cli.command else {
            panic!("not run")
        };
        assert!(r.attach.interactive && r.attach.tty && r.rm);
        assert_eq!(r.image, "bb");
        assert_eq!(r.command, ["ls", "-l", "/"]);
        assert_eq!(r.opts.container.env, ["A=1"]);
        assert_eq!(r.opts.container.mount, ["v:/v"]);
    }

    #[test]
    fn bools_have_no_forms() {
        let cli =
            Cli::try_parse_from(["klee", "image", "create", "--no-dns", "fetch", "x"]).unwrap();
        let Command::Image(ImageCmd::Create(c)) = cli.command else {
            panic!("not image create")
        };
        assert!(c.no_dns && !c.dns);
        assert_eq!(c.method, Method::Fetch);
        let cli =
            Cli::try_parse_from(["klee", "image", "create", "--no-dns", "--dns", "fetch-auto"])
                .unwrap();
        let Command::Image(ImageCmd::Create(c)) = cli.command else {
            panic!("not image create")
        };
        assert!(c.dns && !c.no_dns);
    }

    #[test]
    fn root_is_global() {
        let cli = Cli::try_parse_from(["klee", "lsc", "-a", "--root", "p/k"]).unwrap();
        assert_eq!(cli.root.as_deref(), Some("p/k"));
    }

    #[test]
    fn network_and_volume_commands_and_their_aliases() {
        let cli =
            Cli::try_parse_from(["klee", "network", "create", "--subnet", "10.0.0.0/24", "n"])
                .unwrap();
        assert!(matches!(
            cli.command,
            Command::Network(NetworkCmd::Create(_))
        ));
        let cli = Cli::try_parse_from(["klee", "network", "lsn"]).unwrap();
        assert!(matches!(cli.command, Command::Network(NetworkCmd::Ls(_))));
        let cli = Cli::try_parse_from(["klee", "volume", "lsv"]).unwrap();
        assert!(matches!(cli.command, Command::Volume(VolumeCmd::Ls(_))));
        // --help is clap's own again.
        let err = Cli::try_parse_from(["klee", "network", "--help"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
    }
}
