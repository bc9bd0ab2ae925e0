#!/usr/bin/perl

# Upstream connections are kept and reused: a pull's exchanges, one after
# the other, travel on one connection to the upstream, over plain HTTP and
# over TLS, which is TLS 1.3 and resumes its session on the next
# connection; the upstream's Host header and the TLS server name are the
# remote's host, also when it is a name that nginx's resolver resolves. A
# kept connection the upstream closed meanwhile costs nothing but a new
# one. Each exchange is a line of the error log at "info", saying whether
# it used a kept connection, and an item of $pullthrough_upstream in the
# access log of the request that carried it. libcurl (remotes with a CA of their own)
# offers TLS 1.3 and keeps its connections too, and speaks HTTP/2 to an
# upstream that offers it: the concurrent exchanges of a pull, each of a
# different client request, are streams of one connection.
#
# The upstream is docker-registry behind a stock nginx (the "front"), whose
# access log tells the connection, its requests, the TLS version, session
# reuse and the Host and server name of every request.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use Digest::SHA ();
use POSIX ();

use PT::Nginx;
use PT::Pulp;
use PT::Registry;
use PT::Images;
use PT::Pull;
use PT::Certs;
use PT::FakeDNS;
use PT::LatencyProxy;
use PT::Util qw(need_tools);

need_tools(qw(docker-registry skopeo openssl));

# each remote here is on the transport it names (the libcurl one has a CA
# of its own): not moved to libcurl by PT_TRANSPORT=curl
delete $ENV{PT_TRANSPORT};

my $ACCEPT = $PT::Images::ACCEPT;
my $dir = tempdir('pt-260-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

my $reg = PT::Registry->new->start;
my $img = PT::Images::seed($reg, qw(hello app));

my $ca = PT::Certs->new(dir => $dir);
my $srv = $ca->server(name => 'front', dns => [ 'registry.test' ], ip => [ '127.0.0.1' ]);

# the front: plain on PORT, TLS on PORT2 (a connection serves 4 requests,
# then the next one must resume the session)
my $front = PT::Nginx->new(conf => <<"EOF")->start;
http {
    log_format conn '\$connection \$connection_requests \$server_port '
                    '"\$ssl_protocol" "\$ssl_session_reused" '
                    '"\$ssl_server_name" "\$http_host" \$request_method \$uri \$status';
    access_log %%TESTDIR%%/conn.log conn;
    log_format h2 '\$connection \$server_protocol \$uri \$status \$msec \$request_time';

    server {
        listen 127.0.0.1:%%PORT%%;
        location / { proxy_pass http://127.0.0.1:@{[ $reg->port ]}; }
    }

    server {
        listen 127.0.0.1:%%PORT2%% ssl;
        ssl_certificate $srv->{cert};
        ssl_certificate_key $srv->{key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:front:1m;
        keepalive_requests 4;
        location / { proxy_pass http://127.0.0.1:@{[ $reg->port ]}; }
    }

    server {
        listen 127.0.0.1:%%PORT3%% ssl http2;
        ssl_certificate $srv->{cert};
        ssl_certificate_key $srv->{key};
        access_log %%TESTDIR%%/h2.log h2;
        location / { proxy_pass http://127.0.0.1:@{[ $reg->port ]}; }
    }
}
EOF

my $dns = PT::FakeDNS->new(map => { 'registry.test' => '127.0.0.1' })->start;

my $t = PT::Nginx->new(conf => cache_conf(
    http => 'resolver ' . $dns->host . ' ipv6=off;'
            . q{ log_format up '$request_uri "$pullthrough_upstream"';}
            . ' access_log %%TESTDIR%%/up.log up;'))->start;

# $pullthrough_upstream of each request: { uri => value }, the last wins
sub up_log {
    my %v = map { /^(\S+) "(.*)"$/ } split /\n/, PT::Util::slurp($t->dir . '/up.log') // '';
    return \%v;
}

my $plain_port = $front->port;
my $tls_port = $front->port(2);

setup_cache($t, "http://127.0.0.1:$plain_port", base_path => 'plain', name => 'plain');
setup_cache($t, "https://127.0.0.1:$tls_port", base_path => 'tls', name => 'tls',
            remote => { tls_validation => JSON::PP::false });
setup_cache($t, "http://registry.test:$plain_port", base_path => 'named', name => 'named');
setup_cache($t, "https://registry.test:$tls_port", base_path => 'named-tls', name => 'named-tls',
            remote => { tls_validation => JSON::PP::false });
setup_cache($t, "http://nowhere.test:$plain_port", base_path => 'nowhere', name => 'nowhere');
# the remote's own CA: through libcurl
setup_cache($t, "https://127.0.0.1:$tls_port", base_path => 'curl', name => 'curl',
            remote => { ca_cert => $ca->ca_text });

# the front's lines since the last call:
# ({ conn, n, port, proto, reused, sni, host, method, uri, status }, ...)
my $seen = 0;
sub front_log {
    my @l = split /\n/, PT::Util::slurp($front->dir . '/conn.log') // '';
    my @new = @l[ $seen .. $#l ];
    $seen = @l;
    return map {
        my %h;
        @h{qw(conn n port proto reused sni host method uri status)} =
            /^(\d+) (\d+) (\d+) "(.*?)" "(.*?)" "(.*?)" "(.*?)" (\S+) (\S+) (\d+)$/;
        \%h
    } @new;
}

# a pull, one request after the other: the manifest, then its blobs
sub pull {
    my ($base, $ref) = @_;
    my $i = $img->{$ref};
    (my $path = $ref) =~ s/:/\/manifests\//;
    my @status = $t->get("/v2/$base/$path", headers => { Accept => $ACCEPT })->{status};
    push @status, map { $t->get("/v2/$base/library/hello/blobs/$_")->{status} }
                  $i->{config}, @{ $i->{layers} };
    return join ' ', @status;
}

# the distinct values of an expression over front log lines, sorted
sub distinct {
    my ($f, @lines) = @_;
    my %s = map { local $_ = $_; ($f->($_) => 1) } @lines;
    return [ sort keys %s ];
}

sub exchanges {
    my ($mark, $remote) = @_;
    return grep { /upstream exchange: remote "\Q$remote\E"/ } split /\n/, substr($t->error_log, $mark);
}

my $n_hello = 1 + 1 + @{ $img->{'library/hello:1.0'}{layers} };


# plain HTTP, by address

front_log();
my $mark = length $t->error_log;
is(pull('plain', 'library/hello:1.0'), join(' ', (200) x $n_hello), 'plain: a pull, one request at a time');
is(pull('plain', 'library/hello:1.1'), join(' ', (200) x $n_hello), '... and another image');
my @f = front_log();
ok(@f >= 2 * $n_hello - 1, 'plain: the upstream saw the exchanges (' . @f . ')');
is(scalar @{ distinct(sub { $_->{conn} }, @f) }, 1, '... all on one connection');
is_deeply([ map { $_->{n} } @f ], [ 1 .. @f ], '... one request after the other on it');
is_deeply(distinct(sub { $_->{host} }, @f), [ "127.0.0.1:$plain_port" ],
          '... with the remote\'s host as Host');

my @x = exchanges($mark, 'plain');
is(scalar @x, scalar @f, 'each exchange is a line of the error log at info');
like($x[0], qr/\[info\].*remote "plain" GET http:\/\/127\.0\.0\.1:$plain_port\/v2\/library\/hello\/manifests\/1\.0: 200, \d+ bytes, a new connection, \d+ ms/,
     '... the first: method, URL, status, bytes, a new connection, time');
is(scalar(grep { /a kept connection/ } @x), @x - 1, '... the others: a kept connection');

my $up = up_log();
my $h10 = $img->{'library/hello:1.0'};
like($up->{'/v2/plain/library/hello/manifests/1.0'}, qr/^200 \d+ new$/,
     '$pullthrough_upstream of the first request: status, ms, a new connection');
like($up->{"/v2/plain/library/hello/blobs/$h10->{config}"}, qr/^200 \d+ kept$/,
     '... of the next: a kept connection');
is(pull('plain', 'library/hello:1.0'), join(' ', (200) x $n_hello), 'plain: the pull again, all hits');
is(up_log()->{'/v2/plain/library/hello/manifests/1.0'}, '-', '... $pullthrough_upstream of a hit: "-"');


# TLS: 1.3, the session resumed on the next connection

$mark = length $t->error_log;
is(pull('tls', 'library/hello:1.0'), join(' ', (200) x $n_hello), 'tls: a pull');
is(pull('tls', 'library/hello:1.1'), join(' ', (200) x $n_hello), '... and another image');
@f = front_log();
is_deeply(distinct(sub { $_->{proto} }, @f), [ 'TLSv1.3' ], 'tls: TLS 1.3 negotiated');
my %conns;
push @{ $conns{ $_->{conn} } }, $_ for @f;
my @first = map { $conns{$_}[0] } sort { $a <=> $b } keys %conns;
is(scalar @first, int((@f + 3) / 4), '... a connection every 4 requests, as the front allows (' . @f . ' requests)');
is_deeply([ map { $_->{reused} } @first ], [ '.', ('r') x (@first - 1) ],
          '... each new connection after the first resumes the TLS session');
is_deeply(distinct(sub { $_->{sni} }, @f), [ '-' ],
          '... no server name for an address (as nginx sends none for one)');


# a host name: nginx's resolver, Host and server name

$mark = length $t->error_log;
is(pull('named', 'library/hello:1.0'), join(' ', (200) x $n_hello), 'named: a pull from registry.test');
@f = front_log();
is_deeply(distinct(sub { $_->{host} }, @f), [ "registry.test:$plain_port" ],
          '... Host is registry.test');
is(scalar @{ distinct(sub { $_->{conn} }, @f) }, 1, '... one connection');
ok((grep { $_ eq 'registry.test A' } $dns->queries), '... resolved by nginx\'s resolver');

is(pull('named-tls', 'library/hello:1.0'), join(' ', (200) x $n_hello), 'named-tls: a pull over TLS');
@f = front_log();
is_deeply(distinct(sub { "$_->{sni} $_->{host}" }, @f), [ "registry.test registry.test:$tls_port" ],
          '... server name and Host are registry.test');

my $r = $t->get("/v2/nowhere/library/hello/manifests/1.0", headers => { Accept => $ACCEPT });
is_oci_error($r, 502, 'UNAVAILABLE', '... an OCI error');
like($t->error_log, qr/"nowhere\.test" could not be resolved/, '... and the error log says why');


# libcurl (a remote with a CA of its own): TLS 1.3, connections kept too

$mark = length $t->error_log;
is(pull('curl', 'library/hello:1.0'), join(' ', (200) x $n_hello), 'libcurl: a pull');
@f = front_log();
is_deeply(distinct(sub { $_->{proto} }, @f), [ 'TLSv1.3' ], '... TLS 1.3 negotiated');
is(scalar @{ distinct(sub { $_->{conn} }, @f) }, 1, '... one connection for the pull');
@x = exchanges($mark, 'curl');
is(scalar @x, scalar @f, '... each exchange a line of the error log');
is(scalar(grep { /a kept connection/ } @x), @x - 1, '... all but the first on a kept connection');


# libcurl and a far HTTP/2 upstream (100 ms each way): a client asks for
# every blob of an image at once; the exchanges are streams of one
# connection, at the same time (one after the other, each would wait a
# round trip for the one before)

my $lp = PT::LatencyProxy->new(to => '127.0.0.1:' . $front->port(3), delay => 0.1)->start;
setup_cache($t, 'https://127.0.0.1:' . $lp->port, base_path => 'h2', name => 'h2',
            remote => { ca_cert => $ca->ca_text });

my $app = $img->{'team/app:1.0'};
is($t->get('/v2/h2/team/app/manifests/1.0', headers => { Accept => $ACCEPT })->{status}, 200,
   'http2: the manifest of team/app:1.0');
$lp->reset_requests;
$mark = length $t->error_log;

my @blobs = ($app->{config}, @{ $app->{layers} });
my @pids;
for my $i (0 .. $#blobs) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        my $r = $t->get("/v2/h2/team/app/blobs/$blobs[$i]");
        my $ok = $r->{status} == 200
                 && 'sha256:' . Digest::SHA::sha256_hex($r->{content}) eq $blobs[$i];
        POSIX::_exit($ok ? 0 : 1);
    }
    push @pids, $pid;
}
my $failed = 0;
for (@pids) { waitpid($_, 0); $failed++ if $? }

is($failed, 0, 'http2: ' . @blobs . ' blobs asked at once, each served whole');
my @h2 = grep { m{/team/app/blobs/} } split /\n/, PT::Util::slurp($front->dir . '/h2.log') // '';
is(scalar @h2, scalar @blobs, '... each one exchange upstream');
is_deeply(distinct(sub { (split ' ')[1] }, @h2), [ 'HTTP/2.0' ], '... over HTTP/2');
is(scalar @{ distinct(sub { (split ' ')[0] }, @h2) }, 1, '... on one connection');
is(scalar $lp->requests, 0, '... the one the manifest opened (no new TCP connection)');
my @starts = sort { $a <=> $b } map { my @w = split ' '; $w[4] - $w[5] } @h2;
ok($starts[-1] - $starts[0] < 0.1,
   sprintf('... at the same time: the upstream had them all within %.3f s, '
           . 'under a round trip (0.2 s)', $starts[-1] - $starts[0]));
@x = exchanges($mark, 'h2');
is(scalar(grep { /a kept HTTP\/2 connection/ } @x), scalar @blobs,
   '... and the error log says "a kept HTTP/2 connection" for each');
$lp->stop;


# the front restarted: the kept connections are dead, the next exchange
# takes a new one, and the client never knows

$front->restart;
front_log();
$mark = length $t->error_log;
is(pull('plain', 'library/hello:1.0'), join(' ', (200) x $n_hello),
   'after the upstream closed the kept connection: the pull works (hits)');
$r = $t->get("/v2/plain/library/hello/manifests/latest", headers => { Accept => $ACCEPT });
is($r->{status}, 200, '... and a new exchange works');
@f = front_log();
ok(@f >= 1, '... which reached the upstream');

$t->stop;
$front->stop;

done_testing;
