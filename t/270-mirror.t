#!/usr/bin/perl

# As a registry mirror, with image names unchanged: Docker Engine's
# registry-mirrors asks /v2/library/hello/... with no base path, which
# "pullthrough_registry default=hub" sends to the distribution "hub";
# containerd's ?ns=<registry> picks the distribution whose remote is that
# registry; names that begin with a base path still go there. skopeo and
# podman pull docker.io/library/hello unchanged through a registries.conf
# mirror whose location carries the base path. Without default= or a
# matching ns, a name without a base path is unknown, as before.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);

use PT::Nginx;
use PT::Pulp;
use PT::Registry;
use PT::Images;
use PT::Pull;
use PT::Util qw(need_tools missing_tools spew);

need_tools(qw(docker-registry skopeo openssl));

my $ACCEPT = $PT::Images::ACCEPT;
my $dir = tempdir('pt-270-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

# two upstreams: "hub" has library/hello, "quay" has team/app
my $hub = PT::Registry->new->start;
my $quay = PT::Registry->new->start;
my $hello = PT::Images::seed($hub, 'hello')->{'library/hello:1.0'};
my $app = PT::Images::seed($quay, 'app')->{'team/app:1.0'};

# PORT: /v2/ with default=hub; PORT2: /v2/ without
my $t = PT::Nginx->new(conf => cache_conf(
    registry_args => ' default=hub',
    http => 'server { listen 127.0.0.1:%%PORT2%%; location /v2/ { pullthrough_registry; } }'))->start;

setup_cache($t, $hub->url, base_path => 'hub', name => 'hub');
setup_cache($t, $quay->url, base_path => 'quay', name => 'quay');

sub get {
    my ($path, %o) = @_;
    my $r = $t->request('GET', $path, headers => { Accept => $ACCEPT }, %o);
    return $r;
}


# Docker Engine's mirror requests: /v2/<name>/... as on Docker Hub

my $r = get('/v2/library/hello/manifests/1.0');
is_deeply([ $r->{status}, $r->{headers}{'docker-content-digest'} ], [ 200, $hello->{digest} ],
          'default=hub: /v2/library/hello/manifests/1.0 from hub\'s upstream');
for my $b ($hello->{config}, @{ $hello->{layers} }) {
    is(get("/v2/library/hello/blobs/$b")->{status}, 200, "... its blob $b");
}
my ($repo) = grep { $_->{name} eq 'hub/library/hello' }
             @{ list_all($t, "$API/repositories/container/container/") };
ok($repo, '... into the repository hub/library/hello, as if asked as hub/library/hello');
is(get('/v2/hub/library/hello/manifests/1.0')->{status}, 200, '... which the base path names too');
$r = get('/v2/library/hello/tags/list');
is_deeply([ $r->{status}, $r->{json}{name}, $r->{json}{tags} ], [ 200, 'library/hello', [ '1.0' ] ],
          'tags/list through the mirror: the name as asked');

is(get('/v2/team/app/manifests/1.0')->{status}, 404, 'team/app is not on hub\'s upstream: 404');


# containerd's ns: the distribution whose remote is that registry

my $ns = '127.0.0.1:' . $quay->port;
$r = get("/v2/team/app/manifests/1.0?ns=$ns");
is_deeply([ $r->{status}, $r->{headers}{'docker-content-digest'} ], [ 200, $app->{digest} ],
          "?ns=$ns: team/app from quay's upstream");
is(get("/v2/team/app/blobs/$app->{layers}[0]?ns=$ns")->{status}, 200, '... and its blob');
$r = get("/v2/library/hello/manifests/1.0?ns=127.0.0.1%3A" . $hub->port);
is($r->{status}, 200, '?ns with the port escaped (as containerd sends it): hub');
is(get("/v2/library/hello/manifests/1.0?ns=registry.example")->{status}, 200,
   '?ns of a registry no remote serves: the default');
is(get("/v2/quay/team/app/manifests/1.0?ns=127.0.0.1:" . $hub->port)->{status}, 200,
   'a name that begins with a base path goes there, whatever ns says');


# without default=, a name without a base path is unknown, unless ns says

$r = $t->request('GET', '/v2/library/hello/manifests/1.0', port => 2,
                 headers => { Accept => $ACCEPT });
is_oci_error($r, 404, 'NAME_UNKNOWN', 'no default=: /v2/library/hello/... is unknown');
$r = $t->request('GET', "/v2/team/app/manifests/1.0?ns=$ns", port => 2,
                 headers => { Accept => $ACCEPT });
is($r->{status}, 200, '... but ns still finds its distribution');


# registries.conf mirrors: the image name unchanged

spew("$dir/registries.conf", <<"EOC");
unqualified-search-registries = []

[[registry]]
prefix = "docker.io"
location = "docker.io"

[[registry.mirror]]
location = "127.0.0.1:@{[ $t->port ]}/hub"
insecure = true
EOC

{
    # podman reads it from the environment, skopeo from --registries-conf
    local $ENV{CONTAINERS_REGISTRIES_CONF} = "$dir/registries.conf";

    my ($rc, $out) = skopeo({ timeout => 60 }, '--registries-conf', "$dir/registries.conf",
                            'copy', '--quiet', 'docker://docker.io/library/hello:1.0', "dir:$dir/skopeo");
    is($rc, 0, 'skopeo copy docker://docker.io/library/hello:1.0 through the mirror') or diag($out);
    is(file_digest("$dir/skopeo/manifest.json"), $hello->{digest}, '... the manifest of hub\'s library/hello:1.0');

    SKIP: {
        my $why = missing_tools('podman');
        skip $why, 2 if $why;

        ($rc, $out) = podman({ timeout => 120 }, "$dir/podman", 'pull', '--quiet', 'docker.io/library/hello:1.0');
        skip "podman cannot run here: $out", 2 if $rc && $out =~ /cannot|permission|not permitted|newuidmap|user namespace/i;
        is($rc, 0, 'podman pull docker.io/library/hello:1.0 through the mirror') or diag($out);
        ($rc, $out) = podman("$dir/podman", 'image', 'inspect', '--format', '{{.Digest}}', 'docker.io/library/hello:1.0');
        like($out, qr/\Q$hello->{digest}\E/, '... the image of hub\'s library/hello:1.0');
    }
}

$t->stop;

done_testing;
