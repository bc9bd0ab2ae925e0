#!/usr/bin/perl

# Docker Hub without the internet, on the real code path: remotes whose url
# is https://registry-1.docker.io (or docker.io) reach "Docker Hub" through
# their proxy_url, a forward proxy of the harness's own that maps
# registry-1.docker.io:443 and auth.docker.io:80 to local servers: Debian's
# docker-registry with a certificate for registry-1.docker.io from a test
# CA (the remote's ca_cert) and token auth, and the harness's token issuer,
# anonymous as Docker Hub is for public images. A pull of "hello" is
# library/hello upstream, with an anonymous token for that scope, and
# "hello" and "library/hello" are one cache entry.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);

use PT::Nginx;
use PT::Pulp;
use PT::Registry;
use PT::Images;
use PT::Pull;
use PT::Certs;
use PT::TokenIssuer;
use PT::ConnectProxy;
use PT::Util qw(need_tools);

need_tools(qw(docker-registry skopeo openssl curl));

my $dir = tempdir('pt-250-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
mkdir "$dir/ca";

my $ca = PT::Certs->new(dir => "$dir/ca");
my $srv = $ca->server(name => 'hub', dns => ['registry-1.docker.io']);

my $iss = PT::TokenIssuer->new->start;
my $hub = PT::Registry->new(
    tls => { cert => $srv->{cert}, key => $srv->{key} },
    token => { %{ $iss->registry_token },
               realm => 'http://auth.docker.io/token' })->start;
my $img = $hub->without_auth(sub { PT::Images::seed($hub, 'hello') });
my $hello = $img->{'library/hello:1.0'};

my $px = PT::ConnectProxy->new(map => {
    'registry-1.docker.io:443' => '127.0.0.1:' . $hub->port,
    'auth.docker.io:80' => '127.0.0.1:' . $iss->port,
})->start;

my $t = PT::Nginx->new(conf => cache_conf());
$t->start;

setup_cache($t, 'https://registry-1.docker.io', base_path => 'hub',
            remote => { proxy_url => $px->url, ca_cert => $ca->ca_text });
setup_cache($t, 'https://docker.io', base_path => 'dockerio',
            remote => { proxy_url => $px->url, ca_cert => $ca->ca_text });

sub pull {
    my ($ref, $out) = @_;
    return skopeo('copy', '--quiet', '--src-tls-verify=false',
                  'docker://127.0.0.1:' . $t->port . "/$ref", "dir:$dir/$out");
}

sub hub_paths {
    return map { $_->{path} } $hub->requests;
}


# "hello": library/hello upstream, through the proxy, with a token

$iss->reset_requests;
$px->reset_requests;
$hub->reset_requests;

my ($rc, $out) = pull('hub/hello:1.0', 'short');
is($rc, 0, 'podman-style short name hub/hello:1.0 pulls') or diag($out);
is(file_digest("$dir/short/manifest.json"), $hello->{digest},
   '... the manifest of library/hello:1.0');
for my $l (@{ $hello->{layers} }) {
    is(file_digest("$dir/short/" . ($l =~ s/^sha256://r)), $l, "... layer $l");
}

my @tunnels = grep { $_->{method} eq 'CONNECT' } $px->requests;
ok(@tunnels >= 1, 'the proxy tunnelled to Docker Hub');
ok(!grep({ $_->{target} ne 'registry-1.docker.io:443' } @tunnels),
   '... registry-1.docker.io:443 only') or diag(explain(\@tunnels));

my @tok = $iss->token_requests;
ok(@tok >= 1, 'a token was asked for');
is_deeply([ map { @{ $_->{scopes} } } @tok[0 .. 0] ],
          [ 'repository:library/hello:pull' ], '... for library/hello');
ok(!grep({ defined $_->{user} } @tok), '... anonymously');
ok(scalar(grep { $_->{method} eq 'GET'
                 && $_->{target} =~ m{^http://auth\.docker\.io/token\?} }
          $px->requests), '... through the proxy');

my @hub = hub_paths();
note(scalar(@tunnels) . ' tunnels for ' . scalar(@hub) . ' requests');
ok(@tunnels < @hub, 'connections are reused: fewer tunnels than requests');

my %seen = map { $_ => 1 } @hub;
ok($seen{'/v2/library/hello/manifests/1.0'}, 'Docker Hub was asked for library/hello');
ok(!grep({ m{^/v2/hello/} } keys %seen), '... never for hello');


# library/hello: the same cache entry, nothing asked upstream for blobs

$hub->reset_requests;

($rc, $out) = pull('hub/library/hello:1.0', 'long');
is($rc, 0, 'hub/library/hello:1.0 pulls') or diag($out);
is(file_digest("$dir/long/manifest.json"), $hello->{digest}, '... the same manifest');
is(scalar(grep { m{/blobs/} } hub_paths()), 0, '... its blobs from the cache');

my $repos = list_all($t, "$API/repositories/container/container/");
is_deeply([ sort map { $_->{name} } @$repos ], [ 'hub/library/hello' ],
          'one repository: hub/library/hello');


# docker.io is reached at registry-1.docker.io

$px->reset_requests;
$hub->reset_requests;

my $r = $t->get('/v2/dockerio/hello/manifests/1.0',
                headers => { Accept => $PT::Images::ACCEPT });
is($r->{status}, 200, 'a remote on https://docker.io: the manifest');
is($r->{headers}{'docker-content-digest'}, $hello->{digest}, '... its digest');
ok(scalar(grep { $_ eq '/v2/library/hello/manifests/1.0' } hub_paths()),
   '... asked of registry-1.docker.io');
# (the tunnel of the other remote may be reused: libcurl keeps connections)
ok(!grep({ $_->{method} eq 'CONNECT'
           && $_->{target} ne 'registry-1.docker.io:443' } $px->requests),
   '... and of no other host') or diag(explain([ $px->requests ]));

$t->stop;

done_testing;
