package PT::Cluster;

# A cluster of caches on loopback, as docs/several-caches.md lays it out:
# N nodes (PT::Nginx with the module, each with its own store, all with the
# same pullthrough_config file) behind a balancer (PT::Nginx too, without
# the module's directives) whose configuration is the one the page shows,
# its addresses replaced by the nodes' ports.
#
#   my $c = PT::Cluster->new(nodes => 3, config => {
#       remotes => [ { name => 'origin', url => $reg->url } ],
#       distributions => [ { name => 'cache', base_path => 'cache',
#                            remote => 'origin' } ],
#   })->start;
#   $c->image_ref('library/hello:1.0');    # 127.0.0.1:PORT/cache/library/hello:1.0
#   $c->balancer->get('/v2/...');    # a PT::Nginx: request, access_log, ...
#   $c->node(1);                     # the second node, a PT::Nginx
#   $c->owner('/v2/cache/library/hello/blobs/sha256:...');   # 0 .. N-1
#   $c->kill_node(1);                # SIGKILL to its master and workers
#   $c->start_node(1);               # again, same port and store
#   $c->stop;                        # each one's error log checked
#   my @res = $c->pull_parallel([ 'library/hello:1.0', ... ], $dir,
#                               base => 'cache', attempts => 2);
#   $res[0];                  # { ref, rc, out, attempts, seconds, dir }
#
# Every node answers its registry requests with X-Cache-Node: node<i> and
# logs them in its cache.log (PT::Pull's format, with the cache status).
# The balancer logs $upstream_addr in its access log.
#
# Options of new: nodes (default 3), config (the pullthrough_config file's
# object), node (directives added to each node's /v2/ location), key
# (digest, the page's map: blobs by digest, the rest by repository; or
# repository: everything by repository, for comparisons), listen
# (parameters of the balancer's listen, e.g. sndbuf=32k: a far client
# whose data the kernel does not take in at once), balancer (a code
# reference given the balancer's configuration text, returning it
# changed).

use strict;
use warnings;

use Carp qw(croak);
use File::Path ();
use File::Temp qw(tempdir);
use JSON::PP;
use POSIX ();
use Time::HiRes qw(time sleep);

use PT::Nginx;
use PT::Pull qw(cache_conf skopeo);
use PT::Util qw(slurp spew);

our $PAGE = "$PT::Nginx::REPO/docs/several-caches.md";

my $JSON = JSON::PP->new->utf8->canonical;

# the key of the comparison: a blob goes where its repository's manifests go
my $REPOSITORY_MAP = <<'EOF';
    map $uri $pt_cluster_key {
        ~^/v2/(?<pt_repo>.+)/(?:manifests|blobs|referrers)/[^/]+$   $pt_repo;
        ~^/v2/(?<pt_repo>.+)/tags/list$                             $pt_repo;
        default                                                     $uri;
    }
EOF


sub new {
    my ($class, %opt) = @_;

    my %known = map { $_ => 1 } qw(nodes config node key listen balancer);
    my @bad = grep { !$known{$_} } sort keys %opt;
    croak "PT::Cluster->new: unknown option(s) @bad" if @bad;

    my $self = bless {
        n => $opt{nodes} || 3,
        key => $opt{key} || 'digest',
        listen => $opt{listen} // '',
        dir => tempdir('pt-cluster-XXXXXXXX', TMPDIR => 1,
                       CLEANUP => !$ENV{PT_KEEP}),
        nodes => [],
    }, $class;

    croak "PT::Cluster->new: key is digest or repository"
        unless $self->{key} =~ /^(?:digest|repository)$/;

    $self->{config_file} = "$self->{dir}/pullthrough.json";
    spew($self->{config_file}, $JSON->encode($opt{config} || {}));

    for my $i (0 .. $self->{n} - 1) {
        push @{ $self->{nodes} }, PT::Nginx->new(conf => cache_conf(
            http => "pullthrough_config $self->{config_file};",
            registry => "add_header X-Cache-Node node$i always;\n"
                        . ($opt{node} // '')));
    }

    my $conf = $self->balancer_conf;
    $conf = $opt{balancer}->($conf) if $opt{balancer};
    $self->{balancer} = PT::Nginx->new(conf => $conf);

    return $self;
}


sub node { $_[0]{nodes}[ $_[1] ] }
sub nodes { @{ $_[0]{nodes} } }
sub balancer { $_[0]{balancer} }
sub port { $_[0]{balancer}->port }
sub config_file { $_[0]{config_file} }

# host:port/<base_path>/<ref> through the balancer
sub image_ref {
    my ($self, $ref, $base) = @_;
    return '127.0.0.1:' . $self->port . '/' . ($base // 'cache') . "/$ref";
}


# The balancer's configuration: the page's first nginx block that has a
# consistent hash, its server lines pointed at the nodes in order, its
# listen at the balancer's port; with key => 'repository' its map
# replaced. Dies when the page does not have it.
sub balancer_conf {
    my ($self) = @_;

    my ($conf) = grep { /hash \$pt_cluster_key consistent/ }
                 slurp($PAGE) =~ /^```nginx\n(.*?)^```$/msg
        or die "PT::Cluster: no balancer configuration in $PAGE\n";

    my $i = 0;
    $conf =~ s{^(\s*server\s+)\S+:\d+}{
        $i < $self->{n}
            ? $1 . '127.0.0.1:' . $self->{nodes}[ $i++ ]->port
            : die "PT::Cluster: $PAGE names more servers than nodes\n"
    }gme;
    die "PT::Cluster: $PAGE names $i servers for $self->{n} nodes\n"
        unless $i == $self->{n};

    $conf =~ s{^(\s*listen\s+)[^;]+;}{${1}127.0.0.1:%%PORT%% $self->{listen};}m
        or die "PT::Cluster: no listen in the balancer of $PAGE\n";

    # the balancer's own access log tells which node served what
    $conf =~ s{^(\s*server\s*\{)}{$1\n        access_log %%TESTDIR%%/balancer.log balancer;}m;
    $conf =~ s{^(http\s*\{)}{$1\n    log_format balancer '\$request_method \$request_uri \$status \$body_bytes_sent \"\$upstream_addr\" \"\$upstream_status\"';}m;

    if ($self->{key} eq 'repository') {
        $conf =~ s{^\s*map \$uri \$pt_cluster_key \{.*?^\s*\}\n}{$REPOSITORY_MAP}ms
            or die "PT::Cluster: no map of \$pt_cluster_key in $PAGE\n";
    }

    return $conf;
}


sub start {
    my ($self) = @_;
    $_->start for $self->nodes;
    $self->{balancer}->start;
    return $self;
}


sub stop {
    my ($self) = @_;
    $self->{balancer}->stop if $self->{balancer}->is_running;
    $_->stop for grep { $_->is_running } $self->nodes;
    return $self;
}


# a crash of node $i: SIGKILL to its master and workers
sub kill_node {
    my ($self, $i) = @_;
    $self->node($i)->kill_all;
    return $self;
}


# node $i started again on its port and store
sub start_node {
    my ($self, $i) = @_;
    my $t = $self->node($i);
    my $port = $t->port;
    $t->start;
    die "PT::Cluster: node $i came back on port " . $t->port
        . " instead of $port\n" unless $t->port == $port;
    return $self;
}


# the index of the node that answered $method $path through the balancer
# (its X-Cache-Node), undef when none did
sub owner {
    my ($self, $path, $method) = @_;
    my $r = $self->{balancer}->request($method // 'HEAD', $path);
    my ($i) = ($r->{headers}{'x-cache-node'} // '') =~ /^node(\d+)$/;
    return $i;
}


# the balancer's log: ({ method, uri, status, bytes, upstream, upstream_status }, ...)
sub balancer_log {
    my ($self) = @_;
    my @r;
    for (split /\n/, slurp($self->{balancer}->dir . '/balancer.log')) {
        my @f = /^(\S+) (\S+) (\d+) (\d+) "([^"]*)" "([^"]*)"$/ or next;
        push @r, { method => $f[0], uri => $f[1], status => $f[2] + 0,
                   bytes => $f[3] + 0, upstream => $f[4],
                   upstream_status => $f[5] };
    }
    return @r;
}


# skopeo copy of each reference through the balancer into dir:$dir/<n>,
# all at once (a process each); a pull that fails is run again, up to
# attempts (default 1) runs in all, as a client that retries would.
# Options: base (the base path, default cache), attempts, timeout (of a
# run, default 60 s), retry_times (skopeo's --retry-times, default 3).
# Returns a result for each reference, in their order: { ref, rc, out (of
# the last run), attempts, seconds, dir }.
sub pull_parallel {
    my ($self, $refs, $dir, %o) = @_;

    my $attempts = $o{attempts} || 1;
    my %kid;

    File::Path::make_path($dir);

    for my $n (0 .. $#$refs) {
        my $ref = $refs->[$n];
        my $pid = fork // die "fork: $!";

        if ($pid == 0) {
            # never the END blocks of the test (they stop its servers)
            eval { $self->_pull($ref, "$dir/$n", $attempts, %o) };
            print STDERR $@ if $@;
            POSIX::_exit(0);
        }

        $kid{$pid} = $n;
    }

    waitpid($_, 0) for keys %kid;

    return map {
        my $json = slurp("$dir/$_.json");
        length $json ? $JSON->decode($json)
            : { ref => $refs->[$_], rc => -1, out => 'no result',
                attempts => 0, seconds => 0, dir => "$dir/$_" }
    } 0 .. $#$refs;
}


# one pull of pull_parallel, its result in $dir.json
sub _pull {
    my ($self, $ref, $dir, $attempts, %o) = @_;

    my ($rc, $out, $t0, $runs) = (1, '', time, 0);

    while ($rc && $runs < $attempts) {
        $runs++;
        File::Path::remove_tree($dir);
        ($rc, $out) = skopeo({ timeout => $o{timeout} // 60 },
            'copy', '--quiet', '--src-tls-verify=false',
            '--retry-times', $o{retry_times} // 3,
            'docker://' . $self->image_ref($ref, $o{base}), "dir:$dir");
    }

    spew("$dir.json", $JSON->encode({
        ref => $ref, rc => $rc, out => $out, attempts => $runs,
        seconds => time - $t0, dir => $dir }));
}


1;
