#!/usr/bin/perl

# The README's "make run": t/bin/run-cache starts nginx with the module in
# the foreground on the embedded configuration, all state under STATE_DIR,
# prints how to use it, and serves the admin API and the registry, over
# TLS (a CA of its own, installed where podman, skopeo and Docker look for
# a registry's) and plain HTTP on the same port. Started as root, its
# workers run as nobody, never as root.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use JSON::PP;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

use PT::Nginx;

my $state = tempdir('pt-run-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0711, $state;     # nobody may pass through it
my $port = PT::Nginx::free_port();
my $http = HTTP::Tiny->new(timeout => 5);
my $json = JSON::PP->new->utf8;

# CONFIG: the declarative file of remotes and distributions
open my $cf, '>', "$state/pullthrough.json" or die $!;
print $cf $json->encode({ remotes => [ { name => 'declared', url => 'https://quay.io' } ] });
close $cf;

my $pid = open(my $out, '-|') // die "fork: $!";

if ($pid == 0) {
    open STDERR, '>&', \*STDOUT;
    setpgrp(0, 0);
    $ENV{NGINX_BIN} = $PT::Nginx::NGINX;
    $ENV{LD_PRELOAD} = $ENV{PT_NGINX_PRELOAD} if $ENV{PT_NGINX_PRELOAD};
    $ENV{MODULE} = $PT::Nginx::MODULE;
    $ENV{PORT} = $port;
    $ENV{STATE_DIR} = $state;
    $ENV{TAG_TTL} = '45s';
    $ENV{MAX_SIZE} = '3g';
    $ENV{CONFIG} = "$state/pullthrough.json";
    exec 'sh', "$PT::Nginx::REPO/t/bin/run-cache" or die "exec: $!";
}

# ready when the registry answers
my ($r, $up);
my $deadline = time + 15;
while (time < $deadline) {
    $r = $http->get("http://127.0.0.1:$port/v2/");
    last if $up = $r->{status} == 200;
    last if waitpid($pid, WNOHANG) == $pid;
    sleep 0.05;
}

ok($up, "nginx answers on 127.0.0.1:$port");
is($r->{content}, '{}', 'GET /v2/: {}');
is($r->{headers}{'docker-distribution-api-version'}, 'registry/2.0',
   'GET /v2/: Docker-Distribution-API-Version');

$r = $http->post("http://127.0.0.1:$port/pulp/api/v3/remotes/container/pull-through/",
                 { headers => { 'Content-Type' => 'application/json' },
                   content => $json->encode({ name => 'run',
                                              url => 'https://registry-1.docker.io' }) });
is($r->{status}, 201, 'the admin API creates a remote');
$r = $http->get("http://127.0.0.1:$port/pulp/api/v3/remotes/container/pull-through/?name=run");
is_deeply([ $r->{status}, eval { $json->decode($r->{content})->{count} } ], [ 200, 1 ],
          '... plain HTTP on the TLS port keeps the body and the query');

# TLS on the same port, verified with the CA it made
my $ca = "$state/tls/ca.crt";
ok(-s $ca, 'a CA of its own in STATE_DIR/tls');
my $v = `curl -s --cacert $ca -w ' %{http_code}' https://localhost:$port/v2/ 2>&1`;
is($v, '{} 200', 'https://localhost:PORT/v2/ with the CA verified');
$v = `curl -s --cacert $ca -w ' %{http_code}' https://127.0.0.1:$port/v2/ 2>&1`;
is($v, '{} 200', '... and https://127.0.0.1:PORT/v2/');
$v = `curl -s -w '%{http_code}' https://localhost:$port/v2/ 2>&1`;
isnt($v, '200', '... a client without the CA refuses the certificate');

my @ca_dirs = $> == 0
    ? map { ("/etc/containers/certs.d/$_", "/etc/docker/certs.d/$_") } "localhost:$port", "127.0.0.1:$port"
    : map { ($ENV{XDG_CONFIG_HOME} // "$ENV{HOME}/.config") . "/containers/certs.d/$_" }
          "localhost:$port", "127.0.0.1:$port";
my $ca_text = do { local (@ARGV, $/) = $ca; <> };
is_deeply([ grep { (do { local (@ARGV, $/) = "$_/ca.crt"; <> } // '') ne $ca_text } @ca_dirs ], [],
          'the CA is where podman, skopeo and Docker look for this registry\'s: '
          . join(', ', @ca_dirs));
my $sk = `skopeo inspect --raw docker://localhost:$port/none/none:1 2>&1`;
like($sk, qr/repository name not known to registry|name unknown/i,
     'skopeo reaches it over TLS, verified, without --tls-verify=false (the answer is the registry\'s 404)');
unlike($sk, qr/x509|certificate/i, '... no certificate error') or diag($sk);

SKIP: {
    skip 'not root: the workers run as the invoking user', 3 if $> != 0;
    like(do { local (@ARGV, $/) = "$state/nginx.conf"; <> }, qr/^user nobody nogroup;$/m,
         'as root: "user nobody nogroup;"');
    my $master = do { local (@ARGV, $/) = "$state/nginx.pid"; <> } // '';
    chomp $master;
    my @workers = grep { length } split /\s+/,
        `ps -o user= --ppid $master 2>/dev/null`;
    ok(@workers, "the workers of master $master are listed");
    is_deeply([ grep { $_ ne 'nobody' } @workers ], [], '... and run as nobody');
}

ok(-f "$state/nginx.conf", 'the configuration is in STATE_DIR');
ok(-d "$state/store/meta" && -f "$state/store/meta/data.mdb",
   'the store is in STATE_DIR');
ok(-f "$state/logs/error.log", 'the logs are in STATE_DIR');
like(do { local (@ARGV, $/) = "$state/nginx.conf"; <> }, qr/^\s*resolver\s+\S+/m,
     'a resolver for upstreams named by hostname');
like(do { local (@ARGV, $/) = "$state/nginx.conf"; <> }, qr/^\s*pullthrough_tag_ttl\s+45s;/m,
     'TAG_TTL sets pullthrough_tag_ttl');
like(do { local (@ARGV, $/) = "$state/nginx.conf"; <> }, qr/^\s*pullthrough_store\s+\S+ max_size=3g;/m,
     'MAX_SIZE sets max_size= of pullthrough_store');
like(do { local (@ARGV, $/) = "$state/nginx.conf"; <> }, qr/^\s*pullthrough_config\s+\Q$state\E\/pullthrough\.json;/m,
     'CONFIG sets pullthrough_config');
$r = $http->get("http://127.0.0.1:$port/pulp/api/v3/remotes/container/pull-through/?name=declared");
is(eval { $json->decode($r->{content})->{results}[0]{url} }, 'https://quay.io', '... whose remote is made at start');
$r = $http->get("http://127.0.0.1:$port/metrics");
is($r->{status}, 200, 'the metrics are on /metrics');
like($r->{content}, qr/^pullthrough_store_max_bytes 3221225472$/m, '... with the store\'s cap');
my @cm = grep { /cache manager/ } `ps -o args= --ppid \$(cat $state/nginx.pid) 2>/dev/null`;
is(scalar @cm, 1, 'a cache manager process runs (eviction, garbage collection)');

# stop it: the process group (sh exec'd nginx, its workers)
kill 'TERM', -$pid;
my $stopped;
$deadline = time + 15;
while (time < $deadline) {
    last if $stopped = waitpid($pid, WNOHANG) == $pid;
    sleep 0.05;
}
ok($stopped, 'nginx stops on SIGTERM');

my $printed = do { local $/; <$out> } // '';
like($printed, qr{remotes/container/pull-through/.*name=docker-cache}s,
     'it prints how to create a remote');
like($printed, qr{distributions/container/pull-through/}, '... a distribution');
like($printed, qr{podman pull localhost:$port/docker-cache/library/busybox},
     '... and how to pull through it, without --tls-verify=false');
like($printed, qr{its CA, for clients that verify: copied into}, '... and where its CA went');

# the CA's copies are the test's to remove
for my $d (@ca_dirs) {
    unlink "$d/ca.crt";
    rmdir $d;
}

unlike(do { local (@ARGV, $/) = "$state/logs/error.log"; <> } // '',
       qr/\[(?:alert|crit|emerg)\]/, 'error.log has no [alert], [crit] or [emerg]');

done_testing;
