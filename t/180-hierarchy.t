#!/usr/bin/perl

# A hierarchy of caches: an edge cache whose remotes are a regional cache,
# itself pulling from a real docker-registry (the origin). Two nginx with
# the module, each its own store. The edge names the regional's
# distribution with a path on its remote's url (http://regional/hub: the
# prefix of every upstream name). The regional is behind nginx's
# auth_basic (its admin API and /v2/), and on a second port behind a
# Bearer token check (auth_request to a token-auth docker-registry, whose
# realm is PT::TokenIssuer): the edge's remotes pass both.
#
# Tags, digests, an OCI index and a Docker manifest list pull through both
# levels byte for byte, with the origin's Docker-Content-Digest at every
# level, each blob downloaded once from the origin; a second pull at the
# edge asks neither the regional nor the origin. Referrers (the origin
# has the referrers tag schema, the regional answers the API). Unknown
# tags and blobs are 404s in OCI error JSON at the edge. A regional whose
# remote is Docker Hub (reached through a mapping forward proxy, as
# t/250 does) adds "library/" once: the edge asks for "hello" or
# "library/hello" under its prefix, Docker Hub sees "library/hello" only;
# so does a regional remote https://registry-1.docker.io/library, whose
# prefix "library" is the whole of it.
# The origin down: the regional serves its cached tags STALE, which the
# edge takes as any answer (revalidated, or a miss stored and served);
# what nobody cached is a 502 whose Proxy-Status names both caches, after
# one try of the edge (the regional's answer says it tried already).

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use JSON::PP;
use Time::HiRes qw(time sleep);

use PT::Nginx;
use PT::Pulp;
use PT::Registry;
use PT::Images;
use PT::Pull;
use PT::Certs;
use PT::TokenIssuer;
use PT::ConnectProxy;
use PT::Util qw(need_tools spew);

need_tools(qw(docker-registry skopeo openssl curl));

my $t0 = time;
my $tmp = tempdir('pt-180-XXXXXXXX', TMPDIR => 1, CLEANUP => !$ENV{PT_KEEP});
my $JSON = JSON::PP->new->utf8->canonical;
my $ACCEPT = $PT::Images::ACCEPT;
my %MT = %PT::Images::MT;
$PT::Pull::CMD_TIMEOUT = 30;

my @CREDS = ('edge', 'edge-s3cret');


# the regional's admins and clients send its Basic credentials, unless a
# request says auth => 0

package Regional {
    our @ISA = ('PT::Nginx');

    sub request {
        my ($self, $method, $path, %o) = @_;
        $o{auth} = [ @CREDS ] unless exists $o{auth};
        return $self->SUPER::request($method, $path, %o);
    }
}


# the origin; "Docker Hub" (TLS, token auth) behind a mapping proxy

my $origin = PT::Registry->new->start;
my $img = PT::Images::seed($origin, qw(hello app multi));

mkdir "$tmp/ca";
my $ca = PT::Certs->new(dir => "$tmp/ca");
my $srv = $ca->server(name => 'hub', dns => ['registry-1.docker.io']);
my $iss = PT::TokenIssuer->new->start;
my $hub = PT::Registry->new(
    tls => { cert => $srv->{cert}, key => $srv->{key} },
    token => $iss->registry_token)->start;
$hub->without_auth(sub { PT::Images::seed($hub, 'hello') });
my $px = PT::ConnectProxy->new(map => {
    'registry-1.docker.io:443' => $hub->host,
    $iss->host => $iss->host,
})->start;
note(sprintf 'upstreams ready in %.1f s', time - $t0);


# the regional: auth_basic on its main port, a token check on the second

my $hub_port = $hub->port;
my $regional = Regional->new(conf => cache_conf(
    server => 'auth_basic "regional"; '
              . 'auth_basic_user_file %%TESTDIR%%/htpasswd;',
    http => <<"EOF"));
server {
    listen 127.0.0.1:%%PORT2%%;

    location /v2/ {
        auth_request /.token;
        pullthrough_registry;
    }

    # any token of the realm: a token-auth registry checks its signature
    location = /.token {
        internal;
        proxy_pass https://127.0.0.1:$hub_port/v2/;
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
    }
}
EOF
spew($regional->dir . '/htpasswd', "$CREDS[0]:{PLAIN}$CREDS[1]\n");
$regional->start;

my $rhub = setup_cache($regional, $origin->url, base_path => 'hub',
                       remote => { max_retries => 1 });
setup_cache($regional, 'https://registry-1.docker.io', base_path => 'dockerhub',
            remote => { proxy_url => $px->url, ca_cert => $ca->ca_text });
setup_cache($regional, 'https://registry-1.docker.io/library', base_path => 'official',
            remote => { proxy_url => $px->url, ca_cert => $ca->ca_text });

my $edge = PT::Nginx->new(conf => cache_conf());
$edge->start;

my $rurl = $regional->base_url;
my $eedge = setup_cache($edge, "$rurl/hub", base_path => 'edge',
                        remote => { username => $CREDS[0], password => $CREDS[1] });
setup_cache($edge, "$rurl/dockerhub/", base_path => 'dh',
            remote => { username => $CREDS[0], password => $CREDS[1] });
setup_cache($edge, "$rurl/official", base_path => 'off',
            remote => { username => $CREDS[0], password => $CREDS[1] });
setup_cache($edge, $regional->base_url(2) . '/hub', base_path => 'tok');
setup_cache($edge, "$rurl/hub", base_path => 'anon');


sub pull {
    my ($ref, $base, %o) = @_;
    my $i = $img->{ $o{img} // $ref };
    my $dir = "$tmp/" . ($base =~ s{/}{-}gr) . '-' . ($ref =~ s{[/:@]}{-}gr);
    my @all = $i && $i->{children} ? ('--all') : ();
    my ($rc, $out) = skopeo('copy', '--quiet', @all, '--src-tls-verify=false',
                            'docker://' . cache_ref($edge, $ref, $base), "dir:$dir");
    is($rc, 0, "skopeo copy $base/$ref at the edge") or diag($out);
    return $dir;
}

sub manifest_digest {
    my ($t, $path, %o) = @_;
    my $r = $t->head($path, headers => { Accept => $ACCEPT }, %o);
    return $r->{status} == 200 ? $r->{headers}{'docker-content-digest'} // 'none'
                               : "status $r->{status}";
}

sub origin_paths {
    my ($method) = @_;
    return [ map { "$_->{method} $_->{path}" }
             grep { !$method || $_->{method} eq $method } $origin->requests ];
}


# the regional's auth is honoured, and asked for

is($regional->get('/v2/', auth => 0)->{status}, 401, "the regional's /v2/ wants Basic credentials");
is($regional->get($REMOTES, auth => 0)->{status}, 401, '... and its admin API');
is_oci_error($edge->get('/v2/anon/library/hello/manifests/1.0', headers => { Accept => $ACCEPT }),
             401, 'UNAUTHORIZED', 'an edge remote without them: 401 UNAUTHORIZED');


# through both levels: a tag, a Docker v2s2 image, an index, a list

$origin->reset_requests;
my $mark = cache_log_mark($regional);

for my $ref ('library/hello:1.0', 'team/app:1.0', 'library/multi:1.0', 'team/multi:1.0') {
    my $dir = pull($ref, 'edge');
    my $i = $img->{$ref};
    is(file_digest("$dir/manifest.json"), $i->{digest}, "... $ref: the origin's manifest, byte for byte");
    my @kids = $i->{children} ? values %{ $i->{children} } : ($i);
    my @bad = grep { !-f "$dir/" . substr($_, 7) || file_digest("$dir/" . substr($_, 7)) ne $_ }
              map { ($_->{config}, @{ $_->{layers} }) } @kids;
    is_deeply(\@bad, [], "... $ref: every blob");
}

my $hello = $img->{'library/hello:1.0'};
my $dir = pull("library/hello\@$hello->{digest}", 'edge', img => 'library/hello:1.0');
is(file_digest("$dir/manifest.json"), $hello->{digest}, 'pulled by digest');

my %gets;
$gets{$_}++ for grep { m{/blobs/} } @{ origin_paths('GET') };
my %by_digest;
$by_digest{ (m{/blobs/(\S+)$})[0] }++ for keys %gets;
ok(keys %gets >= 10, 'the origin served the blobs (' . scalar(keys %gets) . ' GETs)');
is_deeply([ grep { $gets{$_} != 1 } sort keys %gets ], [], '... each GET once');
is_deeply([ grep { $by_digest{$_} != 1 } sort keys %by_digest ], [],
          '... each blob downloaded once (library/multi and team/multi share theirs)');
my %mgets;
$mgets{$_}++ for grep { m{/manifests/} } @{ origin_paths('GET') };
is_deeply([ grep { $mgets{$_} != 1 } sort keys %mgets ], [], '... each manifest once');

my @rlog = grep { $_->{path} =~ m{^/v2/hub/} } cache_log($regional, $mark);
ok(@rlog > 10 && !grep({ $_->{path} =~ m{^/v2/hub/hub/} } @rlog),
   'the regional was asked hub/<name>, prefixed once (' . scalar(@rlog) . ' requests)');

for my $ref ('library/hello:1.0', 'team/app:1.0', 'library/multi:1.0', 'team/multi:1.0') {
    my ($repo, $tag) = split /:/, $ref;
    my $want = $img->{$ref}{digest};
    is_deeply([ manifest_digest($origin, "/v2/$repo/manifests/$tag"),
                manifest_digest($regional, "/v2/hub/$repo/manifests/$tag"),
                manifest_digest($edge, "/v2/edge/$repo/manifests/$tag") ],
              [ ($want) x 3 ], "$ref: one Docker-Content-Digest at the origin, the regional, the edge");
}
my $layer = $hello->{layers}[1];
is_deeply([ map { $_->{headers}{'docker-content-digest'} }
            $origin->head("/v2/library/hello/blobs/$layer"),
            $regional->head("/v2/hub/library/hello/blobs/$layer"),
            $edge->head("/v2/edge/library/hello/blobs/$layer") ],
          [ ($layer) x 3 ], '... and of a blob');


# a second pull at the edge asks neither the regional nor the origin

$origin->reset_requests;
$mark = cache_log_mark($regional);
my $emark = cache_log_mark($edge);
pull($_, 'edge') for 'library/hello:1.0', 'team/app:1.0', 'library/multi:1.0', 'team/multi:1.0';
is_deeply(origin_paths(), [], 'a second pull at the edge: nothing asked of the origin');
cache_log_mark($regional);
is_deeply([ map { "$_->{method} $_->{path}" } grep { $_->{path} =~ m{^/v2/hub/} }
            cache_log($regional, $mark) ],
          [], '... nor of the regional');
my @elog = grep { $_->{path} =~ m{^/v2/edge/} } cache_log($edge, $emark);
ok(@elog > 20 && !grep({ $_->{cache} ne 'HIT' } @elog),
   '... every request a HIT at the edge (' . scalar(@elog) . ')');


# referrers: the origin has the referrers tag schema, the regional the API

my $SIG = 'application/vnd.dev.cosign.artifact.sig.v1+json';
my $sig = push_signature($origin, 'library/hello', $hello);
my $r = $edge->get("/v2/edge/library/hello/referrers/$hello->{digest}");
is($r->{status}, 200, 'referrers at the edge: 200');
is_deeply([ map { [ $_->{digest}, $_->{artifactType} ] } @{ $r->{json}{manifests} || [] } ],
          [ [ $sig, $SIG ] ], '... the signature the origin has under sha256-<hex>');
$r = $edge->get("/v2/edge/library/hello/manifests/$sig",
                headers => { Accept => $MT{oci_manifest} });
is_deeply([ $r->{status}, $r->{headers}{'docker-content-digest'}, sha256_digest($r->{content}) ],
          [ 200, $sig, $sig ], '... which pulls through by digest');


# errors

is_oci_error($edge->get('/v2/edge/library/hello/manifests/nope', headers => { Accept => $ACCEPT }),
             404, 'MANIFEST_UNKNOWN', 'an unknown tag: 404 MANIFEST_UNKNOWN at the edge');
is_oci_error($edge->get('/v2/edge/library/hello/blobs/sha256:' . ('0' x 64)),
             404, 'BLOB_UNKNOWN', 'an unknown blob: 404 BLOB_UNKNOWN');


# a token-auth parent: the edge asks the realm of its Bearer challenge

$iss->reset_requests;
$r = $regional->get('/v2/hub/library/hello/manifests/1.0', port => 2, auth => 0);
is($r->{status}, 401, 'the token port refuses a request without a token');
like($r->{headers}{'www-authenticate'} // '', qr/^Bearer realm="\Q${\ $iss->realm }\E"/,
     '... with a Bearer challenge');
$dir = pull('library/hello:1.0', 'tok');
is(file_digest("$dir/manifest.json"), $hello->{digest}, 'pulled through the token-auth port');
ok(scalar(grep { grep { $_ eq 'repository:hub/library/hello:pull' } @{ $_->{scopes} } }
          $iss->token_requests), "... with a token for the regional's name hub/library/hello");


# Docker Hub behind the regional: library/ added once, by the regional,
# and not to a name under a prefix (https://registry-1.docker.io/library)

$hub->reset_requests;
for my $ref ('dh/hello:1.0', 'dh/library/hello:1.0', 'off/hello:1.0') {
    my ($base, $name) = $ref =~ m{^([^/]+)/(.+)$};
    $dir = pull($name, $base, img => 'library/hello:1.0');
    is(file_digest("$dir/manifest.json"), $hello->{digest}, "$ref: library/hello:1.0");
}
my @hub = map { $_->{path} } $hub->requests;
ok(scalar(grep { $_ eq '/v2/library/hello/manifests/1.0' } @hub), 'Docker Hub was asked for library/hello');
is_deeply([ grep { !m{^/v2/(?:library/hello/|$)} } @hub ], [],
          '... and for nothing else (no hello, no library/library/hello)');
is_deeply([ sort map { $_->{name} } grep { $_->{name} =~ /^dockerhub/ }
            @{ list_all($regional, "$API/repositories/container/container/") } ],
          [ 'dockerhub/library/hello' ], '... one repository at the regional');

# what the per-image remotes say they ask upstream
sub upstream_name {
    my ($t, $name) = @_;
    my $l = $t->get("$API/remotes/container/container/?name=$name")->{json};
    return $l->{results}[0]{upstream_name} // 'none';
}
is_deeply([ upstream_name($edge, 'edge/library/hello'), upstream_name($edge, 'off/hello'),
            upstream_name($regional, 'official/hello'), upstream_name($regional, 'dockerhub/library/hello') ],
          [ 'hub/library/hello', 'official/hello', 'library/hello', 'library/hello' ],
          "per-image remotes' upstream_name: the url's prefix, then the name");


# the origin down: the regional's STALE answers are answers

# a tag the regional has and the edge has not
$r = $regional->get('/v2/hub/library/hello/manifests/1.1', headers => { Accept => $ACCEPT });
is_deeply([ $r->{status}, $r->{headers}{'docker-content-digest'} ],
          [ 200, $img->{'library/hello:1.1'}{digest} ], 'the regional caches hello:1.1');
for my $t ($regional, $edge) {
    my $remote = $t == $edge ? $eedge->{remote_obj} : $rhub->{remote_obj};
    is($t->patch($remote->{pulp_href}, { tag_ttl => 1 })->{status}, 202,
       ($t == $edge ? 'the edge' : 'the regional') . ': tags fresh for 1 s');
}
$origin->stop;
sleep 1.1;

$mark = cache_log_mark($regional);
$r = logged_request($edge, 'GET', '/v2/edge/library/hello/manifests/1.0', headers => { Accept => $ACCEPT });
is_deeply([ $r->{status}, $r->{digest} ], [ 200, $hello->{digest} ],
          'the origin down, an expired tag at both: 200, the same manifest');
is($r->{cache}, 'REVALIDATED', '... the edge confirmed it with the regional');
my ($line) = grep { $_->{path} eq '/v2/hub/library/hello/manifests/1.0' } cache_log($regional, $mark);
is($line && $line->{cache}, 'STALE', '... which served it STALE');

$r = logged_request($edge, 'GET', '/v2/edge/library/hello/manifests/1.1', headers => { Accept => $ACCEPT });
is_deeply([ $r->{status}, $r->{digest}, $r->{cache} ], [ 200, $img->{'library/hello:1.1'}{digest}, 'MISS' ],
          "a tag only the regional has, STALE there: the edge's MISS, stored");
$regional->stop;
$r = logged_request($edge, 'GET', '/v2/edge/library/hello/manifests/1.1', headers => { Accept => $ACCEPT });
is($r->{status}, 200, '... then served by the edge, the regional stopped');
like($r->{cache}, qr/^(?:HIT|STALE)$/, '... from its store (' . $r->{cache} . ')');
$regional->start;

# what nobody cached: one 502, one try of the edge
$mark = cache_log_mark($regional);
my $t1 = time;
$r = $edge->get('/v2/edge/library/hello/manifests/latest', headers => { Accept => $ACCEPT });
my $took = time - $t1;
is_oci_error($r, 502, 'UNAVAILABLE', 'what nobody cached: 502 UNAVAILABLE at the edge');
is($r->{headers}{'proxy-status'},
   'ngx_pullthrough; error=destination_unavailable, ngx_pullthrough; received-status=502',
   '... its Proxy-Status: the origin unreachable from the regional, its 502 at the edge');
is(scalar(grep { $_->{path} =~ m{/manifests/latest$} } cache_log($regional, $mark)), 1,
   '... the edge asked the regional once');
ok($took < 3, sprintf('... in %.1f s (the regional\'s one retry)', $took));

$r = $edge->get("/v2/edge/library/hello/blobs/$img->{'library/hello:1.1'}{layers}[1]");
is_oci_error($r, 502, 'UNAVAILABLE', 'an uncached blob: 502 UNAVAILABLE');

$edge->stop;
$regional->stop;
note(sprintf 'total %.1f s', time - $t0);

done_testing;


# a cosign-like signature of $subject in $repo of the registry, and the
# index of its referrers under the tag schema's tag sha256-<hex>
sub push_signature {
    my ($reg, $repo, $subject) = @_;

    my $empty = '{}';
    my $payload = '{"critical":{"image":{"docker-manifest-digest":"'
                  . $subject->{digest} . '"}}}';
    put_blob($reg, $repo, $_) for $empty, $payload;

    my $man = $JSON->encode({
        schemaVersion => 2, mediaType => $MT{oci_manifest}, artifactType => $SIG,
        config => { mediaType => 'application/vnd.oci.empty.v1+json',
                    digest => sha256_digest($empty), size => length $empty },
        layers => [ { mediaType => 'application/vnd.dev.cosign.simplesigning.v1+json',
                      digest => sha256_digest($payload), size => length $payload } ],
        subject => { mediaType => $subject->{media_type}, digest => $subject->{digest},
                     size => $subject->{size} },
    });
    my $d = sha256_digest($man);
    put_manifest($reg, "$repo/manifests/$d", $MT{oci_manifest}, $man);

    my $index = $JSON->encode({
        schemaVersion => 2, mediaType => $MT{oci_index},
        manifests => [ { mediaType => $MT{oci_manifest}, digest => $d,
                         size => length $man, artifactType => $SIG } ],
    });
    (my $tag = $subject->{digest}) =~ s/:/-/;
    put_manifest($reg, "$repo/manifests/$tag", $MT{oci_index}, $index);

    return $d;
}

sub put_blob {
    my ($reg, $repo, $bytes) = @_;
    my $r = $reg->request('POST', "/v2/$repo/blobs/uploads/");
    die "upload: $r->{status}\n" unless $r->{status} == 202;
    my $loc = $r->{headers}{location};
    $loc = $reg->url . $loc if $loc =~ m{^/};
    $r = $reg->request('PUT', $loc . ($loc =~ /\?/ ? '&' : '?') . 'digest=' . sha256_digest($bytes),
                       content => $bytes,
                       headers => { 'Content-Type' => 'application/octet-stream' });
    die "upload: $r->{status} $r->{content}\n" unless $r->{status} == 201;
}

sub put_manifest {
    my ($reg, $path, $type, $bytes) = @_;
    my $r = $reg->request('PUT', "/v2/$path", content => $bytes,
                          headers => { 'Content-Type' => $type });
    die "PUT $path: $r->{status} $r->{content}\n" unless $r->{status} == 201;
}
