#!/usr/bin/perl

# Upstream access, first part: an upstream with Basic authentication
# (Debian's docker-registry with an htpasswd file) and the remote's
# include/exclude filters, applied on every request, cached images included.

use strict;
use warnings;

use Test::More;
use Digest::SHA ();

use PT::Nginx;
use PT::Pulp;
use PT::Registry;
use PT::Images;
use PT::Pull;
use PT::Util qw(need_tools);

need_tools(qw(docker-registry htpasswd skopeo openssl));

my $reg = PT::Registry->new(auth => { puller => 's3cret-pw' })->start;
my $img = PT::Images::seed($reg, qw(hello app));

my $t = PT::Nginx->new(conf => cache_conf());
$t->start;

my $hello = $img->{'library/hello:1.0'};
my $app = $img->{'team/app:1.0'};

my %accept = (Accept => join ', ', values %PT::Images::MT);


# Basic authentication: the credentials go upstream after the challenge,
# then up front: an upstream that asked for them once is not asked again

my $good = setup_cache($t, $reg->url, base_path => 'good',
                       remote => { username => 'puller',
                                   password => 's3cret-pw' });
setup_cache($t, $reg->url, base_path => 'anon');
setup_cache($t, $reg->url, base_path => 'wrong',
            remote => { username => 'puller', password => 'nope' });

my $r = $t->get('/v2/good/library/hello/manifests/1.0', headers => \%accept);
is($r->{status}, 200, 'Basic auth upstream: manifest with the credentials');
is($r->{headers}{'docker-content-digest'}, $hello->{digest},
   'Basic auth upstream: the upstream digest');

$r = $t->get("/v2/good/library/hello/blobs/$hello->{layers}[0]");
is($r->{status}, 200, 'Basic auth upstream: blob fill with the credentials');
is('sha256:' . Digest::SHA::sha256_hex($r->{content}), $hello->{layers}[0],
   'Basic auth upstream: blob bytes');

$r = $t->get('/v2/anon/library/hello/manifests/1.0', headers => \%accept);
is($r->{status}, 401, 'no credentials: 401');
is(eval { $r->{json}{errors}[0]{code} }, 'UNAUTHORIZED',
   'no credentials: OCI UNAUTHORIZED');

$r = $t->get('/v2/wrong/library/hello/manifests/1.0', headers => \%accept);
is($r->{status}, 401, 'wrong password: 401 after one retry');

$r = $t->get("/v2/wrong/library/hello/blobs/$hello->{layers}[0]");
is($r->{status}, 401, 'wrong password: blob 401');

# up front from now on: one upstream request each, no 401 first
$reg->reset_requests;
$r = $t->get("/v2/good/library/hello/blobs/$hello->{layers}[1]");
is($r->{status}, 200, 'Basic auth upstream, later: a blob');
is('sha256:' . Digest::SHA::sha256_hex($r->{content}), $hello->{layers}[1],
   '... its bytes');
my @up = $reg->requests;
is_deeply([ map { $_->{status} } @up ], [ 200 ],
          '... one upstream request, credentials up front')
    or diag(explain(\@up));

$reg->reset_requests;
$r = $t->get('/v2/wrong/library/hello/manifests/1.0', headers => \%accept);
is($r->{status}, 401, 'wrong password, later: 401');
@up = $reg->requests;
is(scalar(@up), 1, '... after one upstream request: refused up front')
    or diag(explain(\@up));

$reg->reset_requests;
$r = $t->get('/v2/anon/library/hello/manifests/1.0', headers => \%accept);
is($r->{status}, 401, 'no credentials, later: 401');
is(scalar(@up = $reg->requests), 1, '... one upstream request');

unlike($t->error_log . $t->access_log, qr/s3cret-pw|nope/,
       'no password in the logs');


# include / exclude filters

my $filt = setup_cache($t, $reg->url, base_path => 'filt',
                       remote => { username => 'puller',
                                   password => 's3cret-pw' });
my $rhref = $filt->{remote_obj}{pulp_href};

sub filters {
    my ($inc, $exc) = @_;
    my $p = $t->patch($rhref, { includes => $inc, excludes => $exc });
    is($p->{status}, 202, 'filters updated');
}

sub status_of {
    my ($path) = @_;
    my $x = $t->get($path, headers => \%accept);
    return $x->{status} . ($x->{json} && ref $x->{json}{errors}
                           ? " $x->{json}{errors}[0]{code}: "
                             . $x->{json}{errors}[0]{message} : '');
}

# none: everything passes
is(status_of('/v2/filt/library/hello/manifests/1.0'), 200,
   'no filters: hello allowed');

# exclude all
filters(undef, ['*']);
$reg->reset_requests;
is(status_of('/v2/filt/team/app/manifests/1.0'),
   '404 NAME_UNKNOWN: Repository not found.', 'exclude *: app refused');
is(status_of('/v2/filt/library/hello/manifests/1.0'),
   '404 NAME_UNKNOWN: Repository not found.',
   'exclude *: a cached image is refused too, at once');
is(status_of("/v2/filt/library/hello/blobs/$hello->{layers}[0]"),
   '404 NAME_UNKNOWN: Repository not found.', 'exclude *: blobs too');
is(scalar(grep { $_->{path} =~ m{^/v2/(library|team)/} } $reg->requests), 0,
   'refused names make no upstream request');

# include *hello* exclude *fixture*: "*" matches "/" too
filters(['*hello*'], ['*fixture*']);
is(status_of('/v2/filt/library/hello/manifests/1.0'), 200,
   'include *hello*: library/hello allowed');
is(status_of('/v2/filt/team/app/manifests/1.0'),
   '404 NAME_UNKNOWN: Repository not found.', 'include *hello*: app refused');
is(status_of('/v2/filt/library/hello-fixture/manifests/1.0'),
   '404 NAME_UNKNOWN: Repository not found.',
   'exclude *fixture* after include *hello*');

# an include that matches nothing
filters(['nothing/*'], undef);
is(status_of('/v2/filt/library/hello/manifests/1.0'),
   '404 NAME_UNKNOWN: Repository not found.', 'include nothing/*: refused');

# back to none
filters(undef, undef);
is(status_of('/v2/filt/team/app/manifests/1.0'), 200,
   'filters removed: app allowed');

my $repos = $t->get('/pulp/api/v3/repositories/container/container/?name=filt/library/hello-fixture');
is($repos->{json}{count}, 0, 'a refused name created nothing');

# Docker Hub naming, without the network: names are normalised before any
# upstream contact, so filters and local lookups show it. "busybox" is
# "library/busybox" there, and here both are one repository.

my $hub = setup_cache($t, 'https://registry-1.docker.io', base_path => 'hub',
                      remote => { excludes => [ 'library/*' ] });

is(status_of('/v2/hub/busybox/manifests/latest'),
   '404 NAME_UNKNOWN: Repository not found.',
   'Docker Hub: busybox is library/busybox (excluded by library/*)');
is(status_of('/v2/hub/library/busybox/manifests/latest'),
   '404 NAME_UNKNOWN: Repository not found.',
   'Docker Hub: library/busybox excluded too');

my $p = $t->patch($hub->{remote_obj}{pulp_href},
                  { excludes => undef, includes => [ 'library/busybox' ] });
is($p->{status}, 202, 'Docker Hub: include library/busybox');

# allowed now, and answered locally: a repository nothing was pulled into
is(status_of('/v2/hub/busybox/tags/list'),
   '404 NAME_UNKNOWN: repository name not known to registry',
   'Docker Hub: busybox passes an include of library/busybox');
is(status_of('/v2/hub/team/app/tags/list'),
   '404 NAME_UNKNOWN: Repository not found.',
   'Docker Hub: a two-component name is left as it is');

$t->stop;
$reg->stop;

done_testing;
