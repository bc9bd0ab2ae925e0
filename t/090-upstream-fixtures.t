#!/usr/bin/perl

# The fixtures of the data-plane tests, without nginx: PT::Registry runs a
# real upstream registry, PT::Images seeds it with the test images, and the
# registry serves them as the later tests expect (media types, digests,
# layer sizes); requests() counts exactly the requests clients make.

use strict;
use warnings;

use Test::More;
use Digest::SHA qw(sha256_hex);
use File::Temp qw(tempdir);
use HTTP::Tiny;
use JSON::PP;
use Time::HiRes qw(time);
use PT::Registry;
use PT::Images;
use PT::Util qw(need_tools missing_tools);

need_tools(qw(docker-registry skopeo openssl));

my %MT = %PT::Images::MT;
my $MiB = 1024 * 1024;
my $http = HTTP::Tiny->new(timeout => 60);


# start and seed

my $t0 = time;
my $reg = PT::Registry->new->start;
like($reg->url, qr{^http://127\.0\.0\.1:\d+$}, 'registry url');
ok(-d $reg->storage_dir, 'storage directory');
note(sprintf 'registry started in %.2f s', time - $t0);

for my $set (PT::Images::sets()) {
    my $b = PT::Images::build($set);
    note(sprintf 'set %s: layout %s (%s)', $set, $b->{dir},
         $b->{seconds} ? sprintf('built in %.2f s', $b->{seconds}) : 'cached');
}

$t0 = time;
my $img = PT::Images::seed($reg, qw(hello app multi big fleet));
note(sprintf 'seeded in %.2f s', time - $t0);

my %expect = (
    'library/hello:1.0'    => $MT{oci_manifest},
    'library/hello:1.1'    => $MT{oci_manifest},
    'library/hello:latest' => $MT{oci_manifest},
    'team/app:1.0'         => $MT{v2s2},
    'team/app:1.1'         => $MT{v2s2},
    'team/app:latest'      => $MT{v2s2},
    'library/multi:1.0'    => $MT{oci_index},
    'library/multi:latest' => $MT{oci_index},
    'team/multi:1.0'       => $MT{v2_list},
    'team/multi:latest'    => $MT{v2_list},
    'library/big:1.0'      => $MT{oci_manifest},
    'library/big:latest'   => $MT{oci_manifest},
    map { ("fleet/svc-$_:1.0" => $MT{oci_manifest}) } 0 .. 9,
);
is_deeply([ sort keys %$img ], [ sort keys %expect ], 'seed: every tag');
is_deeply([ sort keys %$img ],
          [ sort(PT::Images::tags(PT::Images::sets())) ], 'tags()');


# every tag, through plain HTTP

sub get_manifest {
    my ($ref, $accept) = @_;
    my ($repo, $tag) = $ref =~ /\@/ ? $ref =~ /^(.+)\@(.+)$/
                                     : $ref =~ /^(.+):(.+)$/;
    return $http->get($reg->url . "/v2/$repo/manifests/$tag",
                      { headers => { Accept => $accept // $PT::Images::ACCEPT } });
}

for my $ref (sort keys %expect) {
    my $r = get_manifest($ref);
    is($r->{status}, 200, "$ref: 200");
    is($r->{headers}{'content-type'}, $expect{$ref}, "$ref: media type");
    my $d = $r->{headers}{'docker-content-digest'} // '';
    is($d, $img->{$ref}{digest}, "$ref: Docker-Content-Digest as seeded");
    is('sha256:' . sha256_hex($r->{content}), $d, "$ref: body matches digest");
    is($img->{$ref}{media_type}, $expect{$ref}, "$ref: seed media type");
}

is($img->{'library/hello:latest'}{digest}, $img->{'library/hello:1.1'}{digest},
   'hello: latest = 1.1');
isnt($img->{'library/hello:1.0'}{digest}, $img->{'library/hello:1.1'}{digest},
     'hello: 1.0 != 1.1');
is($img->{'team/app:latest'}{digest}, $img->{'team/app:1.1'}{digest},
   'app: latest = 1.1');
is($img->{'library/multi:latest'}{digest}, $img->{'library/multi:1.0'}{digest},
   'multi: latest = 1.0');
is($img->{'team/multi:latest'}{digest}, $img->{'team/multi:1.0'}{digest},
   'team/multi: latest = 1.0');
is($img->{'library/big:latest'}{digest}, $img->{'library/big:1.0'}{digest},
   'big: latest = 1.0');


# OCI images are served exactly as built; v2s2 ones as skopeo converted them

for my $ref (qw(library/hello:1.0 library/hello:1.1 library/multi:1.0
                library/big:1.0)) {
    is($img->{$ref}{digest}, $img->{$ref}{source}{digest},
       "$ref: digest of the built layout (--preserve-digests)");
}

for my $ref (qw(library/hello:1.0 library/hello:1.1 library/big:1.0)) {
    my ($i, $s) = ($img->{$ref}, $img->{$ref}{source});
    is_deeply($i->{layers}, $s->{layers}, "$ref: layers as built");
    is_deeply($i->{diff_ids}, $s->{layers},
              "$ref: diff_ids = layer digests (uncompressed)");
    is($i->{config}, $s->{config}, "$ref: config as built");
    is_deeply($i->{layer_media_types}, [ ($MT{oci_layer}) x 2 ],
              "$ref: uncompressed OCI layers");
    is($i->{config_media_type}, $MT{oci_config}, "$ref: OCI config");
    is($i->{platform}, 'linux/amd64', "$ref: platform");
}

for my $ref (qw(team/app:1.0 team/app:1.1)) {
    my ($i, $s) = ($img->{$ref}, $img->{$ref}{source});
    isnt($i->{digest}, $s->{digest}, "$ref: converted manifest");
    is($i->{config}, $s->{config}, "$ref: config blob kept by the conversion");
    is($i->{config_media_type}, $MT{v2_config}, "$ref: Docker config type");
    is_deeply($i->{layer_media_types}, [ ($MT{v2_layer_gz}) x 2 ],
              "$ref: gzip layers");
    is_deeply($i->{diff_ids}, $s->{diff_ids}, "$ref: same diff_ids");
    ok(!grep({ my $l = $_; grep { $_ eq $l } @{ $s->{layers} } }
             @{ $i->{layers} }), "$ref: layer digests differ from the tars");
}

{
    my ($a, $b) = @{ $img }{qw(library/hello:1.0 library/hello:1.1)};
    is($a->{layers}[0], $b->{layers}[0], 'hello 1.0 and 1.1 share a layer');
    isnt($a->{layers}[1], $b->{layers}[1], '... and not the other');
    ($a, $b) = @{ $img }{qw(team/app:1.0 team/app:1.1)};
    is($a->{layers}[0], $b->{layers}[0], 'app 1.0 and 1.1 share a layer');
}

{
    my @f = map { $img->{"fleet/svc-$_:1.0"} } 0 .. 9;
    my %os = map { $_->{layers}[0] => 1 } @f;
    is(scalar(keys %os), 1, 'fleet: the ten images share their first layer');
    my %second = map { $_->{layers}[1] => 1 } @f;
    is(scalar(keys %second), 2, '... five and five a second one');
    is(scalar(keys %{ { map { $_->{layers}[2] => 1 } @f } }), 10,
       '... each a third of its own');
    my %blobs = map { $_ => 1 } map { ($_->{config}, @{ $_->{layers} }) } @f;
    is(scalar(keys %blobs), 23, '... 23 distinct blobs in all');
}

for my $ref (qw(library/multi:1.0 team/multi:1.0)) {
    my $i = $img->{$ref};
    my $child_mt = $ref =~ /^library/ ? $MT{oci_manifest} : $MT{v2s2};
    is_deeply([ sort keys %{ $i->{children} } ], [qw(linux/amd64 linux/arm64)],
              "$ref: two platforms");
    is_deeply([ map { $_->{platform}{os} . '/' . $_->{platform}{architecture} }
                @{ $i->{manifest}{manifests} } ],
              [qw(linux/amd64 linux/arm64)], "$ref: platforms in the index");
    for my $p (sort keys %{ $i->{children} }) {
        my $c = $i->{children}{$p};
        is($c->{media_type}, $child_mt, "$ref $p: child media type");
        is($c->{platform}, $p, "$ref $p: config platform");
        my $r = get_manifest(($ref =~ s/:.*//r) . "\@$c->{digest}");
        is($r->{status}, 200, "$ref $p: child by digest");
    }
    my ($amd, $arm) = @{ $i->{children} }{qw(linux/amd64 linux/arm64)};
    is($amd->{layers}[0], $arm->{layers}[0], "$ref: platforms share a layer");
    isnt($amd->{config}, $arm->{config}, "$ref: configs differ");
}
is($img->{'library/multi:1.0'}{children}{'linux/arm64'}{digest},
   PT::Images::build('multi')->{refs}{'multi-arm64'}{digest},
   'multi: arm64 child as built');


# what the registry answers to narrower Accept headers (later tests rely on
# it): OCI content is 404 unless its type is accepted; a Docker list is
# replaced by its linux/amd64 manifest for a v2s2-only client

{
    my $r = get_manifest('library/hello:1.0', $MT{v2s2});
    is($r->{status}, 404, 'OCI manifest, v2s2-only Accept: 404');
    like($r->{content}, qr/MANIFEST_UNKNOWN/, '... MANIFEST_UNKNOWN');
    $r = get_manifest('library/multi:1.0', $MT{oci_manifest});
    is($r->{status}, 404, 'OCI index, OCI-manifest-only Accept: 404');
    $r = get_manifest('team/multi:1.0', $MT{v2s2});
    is($r->{status}, 200, 'Docker list, v2s2-only Accept: 200');
    is($r->{headers}{'docker-content-digest'},
       $img->{'team/multi:1.0'}{children}{'linux/amd64'}{digest},
       '... the linux/amd64 manifest');
}


# tags and catalog

is_deeply([ sort @{ decode_json($http->get($reg->url
                    . '/v2/library/hello/tags/list')->{content})->{tags} } ],
          [qw(1.0 1.1 latest)], 'hello: tags/list');
is_deeply(decode_json($http->get($reg->url . '/v2/_catalog')->{content}),
          { repositories => [ (map { "fleet/svc-$_" } 0 .. 9),
                              qw(library/big library/hello library/multi
                                 team/app team/multi) ] }, 'catalog');


# layer sizes and contents

{
    my %size = map { $_ => $PT::Images::LAYERS{$_} } keys %PT::Images::LAYERS;
    my @small = grep { $size{$_} < 16 * 1024 } keys %size;
    my @mid = grep { $size{$_} >= $MiB && $size{$_} < 10 * $MiB } keys %size;
    my @large = grep { $size{$_} >= 100 * $MiB } keys %size;
    ok(@small >= 3 && @mid >= 2 && @large == 1,
       'layers of a few KiB, a few MiB, 100 MiB');
}

sub check_blob {
    my ($repo, $digest, $size, $name) = @_;

    my $h = $http->request('HEAD', $reg->url . "/v2/$repo/blobs/$digest");
    is($h->{status}, 200, "$name: HEAD 200");
    is($h->{headers}{'content-length'}, $size, "$name: Content-Length");

    my $sha = Digest::SHA->new(256);
    my $n = 0;
    my $r = $http->get($reg->url . "/v2/$repo/blobs/$digest",
        { data_callback => sub { $sha->add($_[0]); $n += length $_[0] } });
    is($r->{status}, 200, "$name: GET 200");
    is($n, $size, "$name: size");
    is('sha256:' . $sha->hexdigest, $digest, "$name: content matches digest");
}

{
    my $i = $img->{'library/hello:1.0'};
    check_blob('library/hello', $i->{layers}[$_], $i->{layer_sizes}[$_],
               "hello:1.0 layer $_") for 0 .. 1;
    ok($i->{layer_sizes}[0] < 16 * 1024, 'hello:1.0 layer 0: a few KiB');
    ok($i->{layer_sizes}[1] > 2 * $MiB, 'hello:1.0 layer 1: a few MiB');

    $i = $img->{'library/big:1.0'};
    ok($i->{layer_sizes}[0] >= 100 * $MiB, 'big: a layer of 100 MiB');
    $t0 = time;
    check_blob('library/big', $i->{layers}[0], $i->{layer_sizes}[0],
               'big layer');
    note(sprintf 'big layer read and hashed in %.2f s', time - $t0);
}

{
    # the layer tar: one ustar entry, incompressible content
    my $dir = PT::Images::build('hello')->{dir};
    my $d = $img->{'library/hello:1.0'}{layers}[0];
    my $blob = "$dir/blobs/sha256/" . substr($d, 7);
    is(PT::Images::file_digest($blob), $d, 'layout blob: digest of the file');
    SKIP: {
        my $missing = missing_tools(qw(tar gzip));
        skip $missing, 2 if $missing;
        my $list = `tar -tvf '$blob' 2>&1`;
        like($list, qr{\A-rw-r--r-- root/root +5127 \S+ \S+ pt/hello-a\.bin\n\z},
             'layer tar lists one file') or diag($list);
        my $gz = `tar -xOf '$blob' | gzip -c | wc -c`;
        ok($gz > 5127, 'layer content is incompressible');
    }
}


# requests() counts exactly what clients do

$reg->reset_requests;
is(scalar(my @none = $reg->requests), 0, 'reset_requests: nothing yet');

$http->get($reg->url . '/v2/');
get_manifest('library/hello:1.0');
$http->request('HEAD', $reg->url . '/v2/library/hello/blobs/'
               . $img->{'library/hello:1.0'}{config});
$http->get($reg->url . '/v2/library/nope/manifests/1.0');

my @r = $reg->requests;
is_deeply([ map { "$_->{method} $_->{path} $_->{status}" } @r ],
          [ 'GET /v2/ 200',
            'GET /v2/library/hello/manifests/1.0 200',
            "HEAD /v2/library/hello/blobs/$img->{'library/hello:1.0'}{config} 200",
            'GET /v2/library/nope/manifests/1.0 404' ],
          'requests(): method, path, status of each request, in order');
like($r[0]{user_agent}, qr/HTTP-Tiny/, 'requests(): user agent');
is(scalar(@r = $reg->requests), 4, 'requests() again: the same 4');
is(scalar(@r = $reg->requests_matching('GET', qr{/manifests/})), 2,
   'requests_matching');


# skopeo pulls hello:1.0 and gets the layers it was seeded with

SKIP: {
    my $dir = tempdir('pt-090-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $i = $img->{'library/hello:1.0'};

    $reg->reset_requests;
    my $out = `skopeo --insecure-policy copy --quiet --src-tls-verify=false docker://@{[ $reg->host ]}/library/hello:1.0 dir:$dir/hello 2>&1`;
    is($?, 0, 'skopeo copy docker:// dir:') or diag($out), skip 'no copy', 8;

    for my $n (0 .. $#{ $i->{layers} }) {
        my $d = $i->{layers}[$n];
        my $file = "$dir/hello/" . substr($d, 7);
        ok(-f $file, "pulled layer $n exists");
        is(PT::Images::file_digest($file), $d, "pulled layer $n digest");
    }
    is(PT::Images::file_digest("$dir/hello/manifest.json"), $i->{digest},
       'pulled manifest: the same bytes');

    @r = $reg->requests;
    my @blobs = sort map { m{/blobs/(.+)$} ? $1 : () } map { $_->{path} } @r;
    is_deeply(\@blobs, [ sort $i->{config}, @{ $i->{layers} } ],
              'skopeo: one GET per blob');
    is(scalar(grep { $_->{path} =~ m{/manifests/} } @r), 1,
       'skopeo: one manifest request');
    is_deeply([ grep { $_->{method} !~ /^(?:GET|HEAD)$/ || $_->{status} >= 400 } @r ],
              [], 'skopeo: only successful GET/HEAD');
    like($r[-1]{user_agent}, qr/skopeo/, 'skopeo: user agent logged');
    note(join "\n", map { "$_->{method} $_->{uri} $_->{status}" } @r);
}


# restart keeps the storage and the request log

$reg->restart;
ok($reg->is_running, 'restart');
is(get_manifest('library/hello:1.0')->{status}, 200, 'content survives');


# basic auth (htpasswd -Bbn from apache2-utils)

SKIP: {
    my $missing = missing_tools('htpasswd');
    skip $missing, 9 if $missing;

    my $auth = PT::Registry->new(auth => { alice => 'wonder land' })->start;
    is_deeply([ $auth->credentials ], [ 'alice', 'wonder land' ], 'credentials');
    like(PT::Util::slurp($auth->htpasswd_file), qr/^alice:\$2y\$/,
         'bcrypt htpasswd');

    my $r = $http->get($auth->url . '/v2/');
    is($r->{status}, 401, 'auth: 401 without credentials');
    like($r->{headers}{'www-authenticate'}, qr/^Basic realm=/,
         'auth: WWW-Authenticate Basic');
    is($auth->get('/v2/', auth => [ 'alice', 'nope' ])->{status}, 401,
       'auth: 401 with a wrong password');
    is($auth->get('/v2/')->{status}, 200, 'auth: 200 with the credentials');

    my $a = PT::Images::seed($auth, 'hello');
    is($a->{'library/hello:1.0'}{digest}, $img->{'library/hello:1.0'}{digest},
       'auth: seeded, same digest');
    is($http->get($auth->url . '/v2/library/hello/manifests/1.0')->{status},
       401, 'auth: manifest needs credentials');
    ok(scalar(grep { $_->{status} == 401 } $auth->requests),
       'auth: 401s in the request log');
    $auth->stop;
}


# TLS (self-signed certificate; reads go through curl)

SKIP: {
    my $missing = missing_tools('curl');
    skip $missing, 4 if $missing;

    my $dir = tempdir('pt-090-tls-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $out = `openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout $dir/reg.key -out $dir/reg.crt 2>&1`;
    is($?, 0, 'tls: certificate') or diag($out);

    my $tls = PT::Registry->new(tls => { cert => "$dir/reg.crt",
                                         key => "$dir/reg.key" })->start;
    like($tls->url, qr{^https://127\.0\.0\.1:\d+$}, 'tls: https url');
    my $t = PT::Images::seed($tls, 'hello');
    is($t->{'library/hello:1.1'}{digest}, $img->{'library/hello:1.1'}{digest},
       'tls: seeded, same digest');
    is_deeply([ map { "$_->{method} $_->{status}" }
                grep { $_->{path} eq '/v2/library/hello/manifests/1.1' }
                $tls->requests ],
              [ 'PUT 201', 'GET 200', 'GET 200' ],
              'tls: request log (skopeo push, read back, alias source)');
    $tls->stop;
}


# retag and delete_manifest (to change upstream under a cache)

{
    my $d10 = $img->{'library/hello:1.0'}{digest};
    is(PT::Images::retag($reg, 'library/hello:1.0', 'library/hello:moved'),
       $d10, 'retag: returns the digest');
    is(get_manifest('library/hello:moved')->{headers}{'docker-content-digest'},
       $d10, 'retag: the new tag serves the manifest');
    is(PT::Images::retag($reg, 'library/hello:1.0', 'other/hello:1.0'), $d10,
       'retag across repositories (skopeo)');
    is(PT::Images::read_back($reg, 'other/hello:1.0')->{layers}[1],
       $img->{'library/hello:1.0'}{layers}[1], '... with the layers');

    is(PT::Images::delete_manifest($reg, 'library/hello:1.0'), $d10,
       'delete_manifest');
    is(get_manifest('library/hello:1.0')->{status}, 404, '1.0 is gone');
    is(get_manifest('library/hello:moved')->{status}, 404,
       'so is the other tag of that manifest');
    is(get_manifest('library/hello:1.1')->{status}, 200, '1.1 stays');
    is(get_manifest('other/hello:1.0')->{status}, 200,
       'the copy in another repository stays');
}


$reg->stop;
ok(!$reg->is_running, 'stopped');
unlike($reg->registry_log, qr/level=(?:fatal|panic)/, 'no fatal or panic');

done_testing;
