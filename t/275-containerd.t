#!/usr/bin/perl

# containerd itself as a client of the cache used as a mirror: a containerd
# of the test's own (its root, state and socket in the test directory),
# and "ctr content fetch --hosts-dir" with a hosts.toml naming the cache as
# a host of the registry registry.test:PORT, in both of containerd's
# forms: the plain host, where containerd adds ?ns=registry.test:PORT and
# the cache routes on it to the distribution whose remote is that
# registry, and override_path, where the host's path carries the base
# path. The image name is unchanged; the cache's log shows the requests.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use File::Path qw(make_path);
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

use PT::Nginx;
use PT::Pulp;
use PT::Registry;
use PT::Images;
use PT::Pull;
use PT::FakeDNS;
use PT::Util qw(need_tools spew slurp);

need_tools(qw(docker-registry skopeo openssl containerd ctr));
plan skip_all => 'containerd needs root' if $> != 0;

my $dir = tempdir('pt-275-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

my $reg = PT::Registry->new->start;
my $hello = PT::Images::seed($reg, 'hello')->{'library/hello:1.0'};
my $registry = 'registry.test:' . $reg->port;

# the cache reaches the upstream by its name, as containerd names it
my $dns = PT::FakeDNS->new(map => { 'registry.test' => '127.0.0.1' })->start;
my $t = PT::Nginx->new(conf => cache_conf(http => 'resolver ' . $dns->host . ' ipv6=off;'))->start;
setup_cache($t, "http://$registry", base_path => 'mirror', name => 'mirror');

# a containerd of our own
spew("$dir/config.toml", <<"EOC");
version = 2
root = "$dir/root"
state = "$dir/state"
[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
[debug]
  address = "$dir/debug.sock"
EOC

my $pid = fork // die "fork: $!";
if ($pid == 0) {
    open STDOUT, '>', "$dir/containerd.log";
    open STDERR, '>&', \*STDOUT;
    exec 'containerd', '--config', "$dir/config.toml" or POSIX::_exit(127);
}
END { if ($pid) { kill 'TERM', $pid; waitpid($pid, 0) } }

my @ctr = ('ctr', '--address', "$dir/containerd.sock");
my $up = wait_for(sub { system("@ctr version >/dev/null 2>&1") == 0 }, 20);
ok($up, 'containerd answers on its socket') or diag(slurp("$dir/containerd.log"));

my $N = 0;
sub fetch_through {
    my ($hosts_toml, $ns) = @_;
    my $hosts = "$dir/hosts-" . ++$N;
    make_path("$hosts/$registry");
    spew("$hosts/$registry/hosts.toml", $hosts_toml);
    system("@ctr content prune references >/dev/null 2>&1");
    my $mark = () = cache_log($t);
    my ($rc, $out) = run_cmd({ timeout => 60 }, @ctr, 'content', 'fetch', '--hosts-dir', $hosts,
                             "$registry/library/hello:1.0");
    return ($rc, $out, [ cache_log($t, $mark) ]);
}

my $cache = '127.0.0.1:' . $t->port;

# the plain host: ?ns= routes it
my ($rc, $out, $log) = fetch_through(<<"EOH");
server = "http://$registry"

[host."http://$cache"]
  capabilities = ["pull", "resolve"]
EOH
is($rc, 0, "ctr content fetch $registry/library/hello:1.0 through the cache (hosts.toml)") or diag($out);
(my $ns = $registry) =~ s/:/(?::|%3A)/;
my @m = grep { $_->{uri} =~ m{^/v2/library/hello/manifests/1\.0\?ns=$ns$} } @$log;
ok(@m, '... containerd asked the cache for /v2/library/hello/manifests/1.0?ns=' . $registry)
    or diag(join "\n", map { $_->{uri} } @$log);
is_deeply([ map { $_->{status} } @m ], [ (200) x @m ], '... answered from the distribution of that registry');
my %blobs = map { $_->{uri} =~ m{/blobs/(sha256:\w+)\?ns=$ns$} ? ($1 => $_->{status}) : () } @$log;
is_deeply([ sort values %blobs ], [ (200) x keys %blobs ], '... and its blobs, with ns too');
ok(grep({ $_ eq $hello->{layers}[0] } keys %blobs), '... the layers of library/hello:1.0 among them');
ok((grep { $_->{name} eq 'mirror/library/hello' } @{ list_all($t, "$API/repositories/container/container/") }),
   '... into the repository mirror/library/hello');

# override_path: the host's path carries the base path
($rc, $out, $log) = fetch_through(<<"EOH");
server = "http://$registry"

[host."http://$cache/v2/mirror"]
  capabilities = ["pull", "resolve"]
  override_path = true
EOH
is($rc, 0, '... and with override_path (the base path in the host)') or diag($out);
ok((grep { $_->{uri} =~ m{^/v2/mirror/library/hello/manifests/1\.0} } @$log),
   '... which asked /v2/mirror/library/hello/...')
    or diag(join "\n", map { $_->{uri} } @$log);

$t->stop;

done_testing;
