#!/usr/bin/perl

# The registry API on /v2/ against a real upstream: the version check,
# manifests and blobs on a miss and on a hit (headers, exact bytes, what
# goes upstream), HEAD misses that store nothing, blobs shared across
# repositories, ranges and conditional requests on hits, every error code
# that does not need a misbehaving upstream, the write methods, and the
# catalog and tag lists with their pagination.

use strict;
use warnings;

use Test::More;
use JSON::PP;

use PT::Nginx;
use PT::Pulp;
use PT::Registry;
use PT::Images;
use PT::Pull;
use PT::Util qw(need_tools);

need_tools(qw(docker-registry skopeo openssl));

my %MT = %PT::Images::MT;
my $ACCEPT = $PT::Images::ACCEPT;

my $reg = PT::Registry->new->start;
my $img = PT::Images::seed($reg, qw(hello app multi));

my $t = PT::Nginx->new(conf => cache_conf(registry => 'add_header X-Pid $pid always;'));
$t->start;
setup_cache($t, $reg->url);
setup_cache($t, $reg->url, base_path => 'mirror');

my $layout = PT::Images::build('hello')->{dir};
my $app_layout = PT::Images::build('app')->{dir};

my @responses;      # every /v2/ answer, for the API version header

sub v2 {
    my ($method, $path, %o) = @_;
    my $r = http_get($t, $path, method => $method, %o);
    push @responses, [ "$method $path", $r ];
    return $r;
}

sub upstream {
    return [ map { "$_->{method} $_->{path}" } $reg->requests ];
}

sub blob_bytes {
    my ($dir, $digest, $off, $len) = @_;
    my $f = "$dir/blobs/sha256/" . substr($digest, 7);
    open my $fh, '<:raw', $f or die "$f: $!";
    seek $fh, $off, 0;
    my $buf;
    read $fh, $buf, $len;
    return $buf;
}

sub repo_names {
    my $all = list_all($t, "$API/repositories/container/container/");
    return [ sort map { $_->{name} } @$all ];
}


# the version check

{
    my $r = v2('GET', '/v2/');
    is($r->{status}, 200, 'GET /v2/: 200');
    is($r->{content}, '{}', 'GET /v2/: {}');
    like($r->{headers}{'content-type'}, qr{^application/json}, 'GET /v2/: JSON');
    $r = v2('HEAD', '/v2/');
    is($r->{status}, 200, 'HEAD /v2/: 200');
}


# a blob before any manifest of its repository: a plain miss

{
    my $i = $img->{'team/app:1.0'};
    my $d = $i->{layers}[1];
    $reg->reset_requests;
    my $mark = cache_log_mark($t);

    my $r = stream_get($t, "/v2/cache/team/app/blobs/$d");
    is($r->{status}, 200, 'blob before its manifest: 200');
    ok($r->{complete}, 'blob before its manifest: the whole body');
    is($r->{sha256}, $d, 'blob before its manifest: the right bytes');
    is($r->{headers}{'content-length'}, $i->{layer_sizes}[1],
       'blob miss: Content-Length');
    is($r->{headers}{'docker-content-digest'}, $d, 'blob miss: Docker-Content-Digest');
    is_deeply(upstream(), [ "GET /v2/team/app/blobs/$d" ],
              'blob miss: one upstream GET');
    my $l = wait_cache_log($t, $mark, 'GET', qr{/blobs/});
    is($l && $l->{cache}, 'MISS', 'blob miss: logged MISS');
    ok(wait_for(sub { -f blob_file($t, $d) }), 'blob miss: stored');
    is(file_digest(blob_file($t, $d)), $d, 'blob miss: stored file matches');
    ok(!grep({ $_ eq 'cache/team/app' } @{ repo_names() }),
       'a blob alone creates no repository');
}


# HEAD of an uncached manifest: one upstream HEAD, nothing stored

{
    my $i = $img->{'team/app:latest'};
    $reg->reset_requests;
    my $r = v2('HEAD', '/v2/cache/team/app/manifests/latest',
               headers => { Accept => $ACCEPT });
    is($r->{status}, 200, 'manifest HEAD miss: 200');
    is($r->{headers}{'docker-content-digest'}, $i->{digest},
       'manifest HEAD miss: Docker-Content-Digest');
    is($r->{headers}{'content-type'}, $MT{v2s2}, 'manifest HEAD miss: Content-Type');
    is($r->{headers}{'content-length'}, $i->{size},
       'manifest HEAD miss: Content-Length');
    is($r->{content}, '', 'manifest HEAD miss: no body');
    is_deeply(upstream(), [ 'HEAD /v2/team/app/manifests/latest' ],
              'manifest HEAD miss: exactly one upstream HEAD');
    ok(!-e blob_file($t, $i->{digest}), 'manifest HEAD miss: nothing stored');
    is_oci_error(v2('GET', '/v2/cache/team/app/tags/list'), 404, 'NAME_UNKNOWN',
                 'manifest HEAD miss: no tag recorded');
    ok(!grep({ $_ eq 'cache/team/app' } @{ repo_names() }),
       'manifest HEAD miss: no repository');

    # by digest as well
    my $c = $img->{'library/multi:1.0'}{children}{'linux/arm64'};
    $reg->reset_requests;
    $r = v2('HEAD', "/v2/cache/library/multi/manifests/$c->{digest}",
            headers => { Accept => $ACCEPT });
    is($r->{status}, 200, 'manifest HEAD miss by digest: 200');
    is($r->{headers}{'docker-content-digest'}, $c->{digest},
       'manifest HEAD miss by digest: Docker-Content-Digest');
    is_deeply(upstream(), [ "HEAD /v2/library/multi/manifests/$c->{digest}" ],
              'manifest HEAD miss by digest: exactly one upstream HEAD');
    ok(!-e blob_file($t, $c->{digest}), 'manifest HEAD miss by digest: nothing stored');

    # the GET that follows is a miss
    $reg->reset_requests;
    my $mark = cache_log_mark($t);
    $r = v2('GET', '/v2/cache/team/app/manifests/latest',
            headers => { Accept => $ACCEPT });
    is($r->{status}, 200, 'manifest GET after HEAD: 200');
    is($r->{content}, $i->{raw}, 'manifest GET after HEAD: the upstream bytes');
    is_deeply(upstream(), [ 'GET /v2/team/app/manifests/latest' ],
              'manifest GET after HEAD: fetched upstream');
    my $l = wait_cache_log($t, $mark, 'GET', qr{/manifests/latest$});
    is($l && $l->{cache}, 'MISS', 'manifest GET after HEAD: MISS');
}


# manifests: miss, then hit, byte for byte with their headers

sub check_manifest {
    my ($r, $i, $type, $what) = @_;
    is($r->{status}, 200, "$what: 200");
    is($r->{content}, $i->{raw}, "$what: the upstream bytes");
    is($r->{headers}{'content-type'}, $type, "$what: Content-Type");
    is($r->{headers}{'docker-content-digest'}, $i->{digest},
       "$what: Docker-Content-Digest");
    is($r->{headers}{'content-length'}, length $i->{raw}, "$what: Content-Length");
    is($r->{headers}{etag}, qq("$i->{digest}"), "$what: ETag");
}

for my $case ([ 'library/hello', '1.0', $MT{oci_manifest} ],
              [ 'team/app', '1.0', $MT{v2s2} ],
              [ 'library/multi', '1.0', $MT{oci_index} ],
              [ 'team/multi', '1.0', $MT{v2_list} ])
{
    my ($repo, $tag, $type) = @$case;
    my $i = $img->{"$repo:$tag"};

    $reg->reset_requests;
    my $mark = cache_log_mark($t);
    my $r = v2('GET', "/v2/cache/$repo/manifests/$tag",
               headers => { Accept => $ACCEPT });
    check_manifest($r, $i, $type, "$repo:$tag miss");
    # an index by tag: the manifests it lists follow, after the answer
    my @children = map { "GET /v2/$repo/manifests/$_->{digest}" }
                   sort { $a->{digest} cmp $b->{digest} }
                   values %{ $i->{children} || {} };
    my @got;
    wait_for(sub { @got = @{ upstream() }; @got >= 1 + @children });
    is_deeply([ $got[0], sort @got[1 .. $#got] ],
              [ "GET /v2/$repo/manifests/$tag", sort @children ],
              "$repo:$tag miss: one upstream GET"
              . (@children ? ', then one per manifest it lists' : ''));
    $reg->reset_requests;
    my $l = wait_cache_log($t, $mark, 'GET', qr{/\Q$repo\E/manifests/\Q$tag\E$});
    is($l && $l->{cache}, 'MISS', "$repo:$tag miss: logged MISS");
    is(-f blob_file($t, $i->{digest}) ? file_digest(blob_file($t, $i->{digest})) : '',
       $i->{digest}, "$repo:$tag: stored by digest");

    $reg->reset_requests;
    $mark = cache_log_mark($t);
    $r = v2('GET', "/v2/cache/$repo/manifests/$tag",
            headers => { Accept => $ACCEPT });
    check_manifest($r, $i, $type, "$repo:$tag hit");
    $r = v2('GET', "/v2/cache/$repo/manifests/$i->{digest}",
            headers => { Accept => $ACCEPT });
    check_manifest($r, $i, $type, "$repo\@digest hit");
    $r = v2('HEAD', "/v2/cache/$repo/manifests/$tag",
            headers => { Accept => $ACCEPT });
    is($r->{status}, 200, "$repo:$tag HEAD hit: 200");
    is($r->{headers}{'docker-content-digest'}, $i->{digest},
       "$repo:$tag HEAD hit: Docker-Content-Digest");
    is($r->{headers}{'content-length'}, length $i->{raw},
       "$repo:$tag HEAD hit: Content-Length");
    is($r->{content}, '', "$repo:$tag HEAD hit: no body");
    is_deeply(upstream(), [], "$repo:$tag hits: nothing upstream");
    wait_for(sub { cache_log($t, $mark) >= 3 });
    is_deeply([ map { $_->{cache} } cache_log($t, $mark) ], [qw(HIT HIT HIT)],
              "$repo:$tag hits: logged HIT");
}

# the children of an index, by digest, when a client asks for them: cached
# already, fetched when the index was pulled by tag
{
    my $i = $img->{'library/multi:1.0'};
    for my $p (sort keys %{ $i->{children} }) {
        my $c = $i->{children}{$p};
        $reg->reset_requests;
        my $r = v2('GET', "/v2/cache/library/multi/manifests/$c->{digest}",
                   headers => { Accept => $ACCEPT });
        check_manifest($r, $c, $MT{oci_manifest}, "multi child $p by digest");
        is_deeply(upstream(), [], "multi child $p: cached with its index");
        $r = v2('GET', "/v2/cache/library/multi/manifests/$c->{digest}");
        check_manifest($r, $c, $MT{oci_manifest}, "multi child $p hit");
    }
}

# a client that sends no Accept gets the list, not the upstream's pick for
# a schema-2-only client: the cache asks with every type it understands
{
    my $i = $img->{'team/multi:latest'};
    $reg->reset_requests;
    my $r = v2('GET', '/v2/cache/team/multi/manifests/latest');
    check_manifest($r, $i, $MT{v2_list}, 'team/multi:latest without Accept');
}

# a manifest by digest first, its tag later
{
    my $i = $img->{'library/hello:1.1'};
    $reg->reset_requests;
    my $r = v2('GET', "/v2/cache/library/hello/manifests/$i->{digest}",
               headers => { Accept => $ACCEPT });
    check_manifest($r, $i, $MT{oci_manifest}, 'hello@digest(1.1) miss');
    is_deeply(upstream(), [ "GET /v2/library/hello/manifests/$i->{digest}" ],
              'hello@digest miss: one upstream GET by digest');
    $r = v2('GET', '/v2/cache/library/hello/manifests/1.1',
            headers => { Accept => $ACCEPT });
    check_manifest($r, $i, $MT{oci_manifest}, 'hello:1.1');
    $r = v2('GET', '/v2/cache/library/hello/manifests/latest',
            headers => { Accept => $ACCEPT });
    check_manifest($r, $img->{'library/hello:latest'}, $MT{oci_manifest},
                   'hello:latest');
}


# blobs: HEAD miss, GET miss, hits

my $hb = $img->{'library/hello:1.0'};
my $bd = $hb->{layers}[1];
my $bsize = $hb->{layer_sizes}[1];

{
    $reg->reset_requests;
    my $mark = cache_log_mark($t);
    my $r = v2('HEAD', "/v2/cache/library/hello/blobs/$bd");
    is($r->{status}, 200, 'blob HEAD miss: 200');
    is($r->{headers}{'content-length'}, $bsize, 'blob HEAD miss: Content-Length');
    is($r->{headers}{'docker-content-digest'}, $bd,
       'blob HEAD miss: Docker-Content-Digest');
    is_deeply(upstream(), [ "HEAD /v2/library/hello/blobs/$bd" ],
              'blob HEAD miss: exactly one upstream HEAD, no download');
    ok(!-e blob_file($t, $bd), 'blob HEAD miss: nothing stored');
    is_deeply([ tmp_files($t) ], [], 'blob HEAD miss: no temp file');
    my $l = wait_cache_log($t, $mark, 'HEAD', qr{/blobs/});
    is($l && $l->{cache}, 'MISS', 'blob HEAD miss: logged MISS');

    $reg->reset_requests;
    $r = stream_get($t, "/v2/cache/library/hello/blobs/$bd");
    is($r->{status}, 200, 'blob GET miss: 200');
    ok($r->{complete}, 'blob GET miss: whole body');
    is($r->{sha256}, $bd, 'blob GET miss: the right bytes');
    is($r->{headers}{etag}, qq("$bd"), 'blob GET miss: ETag');
    is_deeply(upstream(), [ "GET /v2/library/hello/blobs/$bd" ],
              'blob GET miss: one upstream GET');
    ok(wait_for(sub { -f blob_file($t, $bd) }), 'blob GET miss: stored');

    $reg->reset_requests;
    $mark = cache_log_mark($t);
    $r = stream_get($t, "/v2/cache/library/hello/blobs/$bd");
    is($r->{status}, 200, 'blob hit: 200');
    ok($r->{complete}, 'blob hit: whole body');
    is($r->{sha256}, $bd, 'blob hit: the right bytes');
    is($r->{headers}{'content-length'}, $bsize, 'blob hit: Content-Length');
    is($r->{headers}{'docker-content-digest'}, $bd, 'blob hit: Docker-Content-Digest');
    is($r->{headers}{etag}, qq("$bd"), 'blob hit: ETag');
    is($r->{headers}{'docker-distribution-api-version'}, 'registry/2.0',
       'blob hit: API version header');
    $r = v2('HEAD', "/v2/cache/library/hello/blobs/$bd");
    is($r->{status}, 200, 'blob HEAD hit: 200');
    is($r->{headers}{'content-length'}, $bsize, 'blob HEAD hit: Content-Length');
    is($r->{headers}{'docker-content-digest'}, $bd, 'blob HEAD hit: Docker-Content-Digest');
    is_deeply(upstream(), [], 'blob hits: nothing upstream');
    wait_for(sub { cache_log($t, $mark) >= 2 });
    is_deeply([ map { $_->{cache} } cache_log($t, $mark) ], [qw(HIT HIT)],
              'blob hits: logged HIT');
}

# a blob another repository stored: served from the one file, the upstream
# only confirms it (no second download)
{
    my $d = $hb->{layers}[0];
    v2('GET', "/v2/cache/library/hello/blobs/$d");
    ok(wait_for(sub { -f blob_file($t, $d) }), 'hello layer 0 stored');
    my @before = store_files($t);

    $reg->reset_requests;
    my $r = stream_get($t, "/v2/mirror/library/hello/blobs/$d");
    is($r->{status}, 200, 'blob of another repository: 200');
    ok($r->{complete}, 'blob of another repository: whole body');
    is($r->{sha256}, $d, 'blob of another repository: right bytes');
    is_deeply([ grep { $_->{method} eq 'GET' } $reg->requests ], [],
              'blob of another repository: not downloaded again');
    is_deeply([ store_files($t) ], \@before, 'blob of another repository: no new file');

    # the upstream of this repository does not have it: not served from the
    # other repository's file
    $reg->reset_requests;
    is_oci_error(v2('GET', "/v2/cache/team/app/blobs/$d"), 404, 'BLOB_UNKNOWN',
                 'stored blob unknown to this repository upstream: BLOB_UNKNOWN');
    is(v2('HEAD', "/v2/cache/team/app/blobs/$d")->{status}, 404,
       'stored blob unknown to this repository upstream: HEAD 404');
    is_deeply([ map { "$_->{method} $_->{path}" } grep { $_->{method} eq 'GET' }
                $reg->requests ], [],
              '... and nothing downloaded');
}


# ranges and conditional requests on hits

{
    my $path = "/v2/cache/library/hello/blobs/$bd";
    my $etag = qq("$bd");
    $reg->reset_requests;

    my $r = v2('GET', $path, headers => { Range => 'bytes=0-99' });
    is($r->{status}, 206, 'Range 0-99: 206');
    is($r->{headers}{'content-range'}, "bytes 0-99/$bsize", 'Range 0-99: Content-Range');
    is($r->{headers}{'content-length'}, 100, 'Range 0-99: Content-Length');
    ok($r->{content} eq blob_bytes($layout, $bd, 0, 100), 'Range 0-99: the bytes');

    $r = v2('GET', $path, headers => { Range => 'bytes=1000000-1000999' });
    is($r->{status}, 206, 'Range in the middle: 206');
    ok($r->{content} eq blob_bytes($layout, $bd, 1000000, 1000),
       'Range in the middle: the bytes');

    $r = v2('GET', $path, headers => { Range => 'bytes=-100' });
    is($r->{status}, 206, 'suffix Range: 206');
    is($r->{headers}{'content-range'}, sprintf('bytes %d-%d/%d', $bsize - 100,
       $bsize - 1, $bsize), 'suffix Range: Content-Range');
    ok($r->{content} eq blob_bytes($layout, $bd, $bsize - 100, 100),
       'suffix Range: the last bytes');

    $r = v2('GET', $path, headers => { Range => "bytes=$bsize-" });
    is($r->{status}, 416, 'Range past the end: 416');
    is($r->{headers}{'content-range'}, "bytes */$bsize",
       'Range past the end: Content-Range */size');

    $r = v2('GET', $path, headers => { Range => 'bytes=0-0,10-19' });
    is($r->{status}, 206, 'two ranges: 206');
    like($r->{headers}{'content-type'}, qr{^multipart/byteranges}, 'two ranges: multipart');

    $r = v2('GET', $path, headers => { 'If-None-Match' => $etag });
    is($r->{status}, 304, 'If-None-Match the ETag: 304');
    is($r->{content}, '', '304: no body');
    is($r->{headers}{etag}, $etag, '304: ETag');

    $r = v2('GET', $path, headers => { 'If-None-Match' => qq("sha256:nope", $etag) });
    is($r->{status}, 304, 'If-None-Match a list holding the ETag: 304');

    $r = v2('GET', $path, headers => { 'If-None-Match' => '"sha256:nope"' });
    is($r->{status}, 200, 'If-None-Match another ETag: 200');
    is(length $r->{content}, $bsize, '... the whole blob');

    $r = v2('GET', $path, headers => { Range => 'bytes=0-9', 'If-Range' => $etag });
    is($r->{status}, 206, 'If-Range the ETag: 206');
    $r = v2('GET', $path, headers => { Range => 'bytes=0-9',
                                       'If-Range' => '"sha256:nope"' });
    is($r->{status}, 200, 'If-Range another ETag: 200');
    is(length $r->{content}, $bsize, '... the whole blob');

    my $m = $img->{'library/hello:1.0'};
    my $mpath = '/v2/cache/library/hello/manifests/1.0';
    $r = v2('GET', $mpath, headers => { Accept => $ACCEPT,
                                        'If-None-Match' => qq("$m->{digest}") });
    is($r->{status}, 304, 'manifest hit, If-None-Match: 304');
    $r = v2('GET', $mpath, headers => { Accept => $ACCEPT, Range => 'bytes=0-9' });
    is($r->{status}, 206, 'manifest hit, Range: 206');
    is($r->{content}, substr($m->{raw}, 0, 10), 'manifest hit, Range: the bytes');

    is_deeply(upstream(), [], 'ranges and conditionals: nothing upstream');
}


# errors: each answered at once, nothing upstream for what is invalid, and
# the worker lives on (each answer carries the worker's pid in X-Pid; the
# GET /v2/ that follows each error must come from the same worker)

sub err_case {
    my ($method, $path, $status, $code, $upstream, $what) = @_;
    $what //= "$method $path";
    local $Test::Builder::Level = $Test::Builder::Level + 1;

    $reg->reset_requests;
    my $r = v2($method, $path, headers => { Accept => $ACCEPT });
    if ($method eq 'HEAD') {
        is($r->{status}, $status, "$what: $status");
    } else {
        is_oci_error($r, $status, $code, "$what: $status $code");
    }
    my $pid = $r->{headers}{'x-pid'} // 'none';
    my $next = v2('GET', '/v2/');
    is($next->{headers}{'x-pid'} // 'none', $pid, "$what: the worker survived");
    is_deeply(upstream(), $upstream // [], "$what: "
              . ($upstream ? 'upstream asked once' : 'nothing upstream'));
}

{
    my $z = 'sha256:' . ('0' x 64);
    my $hello = '/v2/cache/library/hello';

    err_case('GET', '/v2/nope/library/hello/manifests/1.0', 404, 'NAME_UNKNOWN',
             undef, 'manifest, no distribution');
    err_case('GET', '/v2/cachefoo/library/hello/manifests/1.0', 404,
             'NAME_UNKNOWN', undef, 'base_path matched on components only');
    err_case('GET', '/v2/cache/manifests/1.0', 404, 'NAME_UNKNOWN', undef,
             'a base_path alone is no repository');
    err_case('GET', "/v2/nope/x/blobs/$z", 404, 'NAME_UNKNOWN', undef,
             'blob, no distribution');
    err_case('HEAD', "/v2/nope/x/blobs/$z", 404, undef, undef,
             'blob HEAD, no distribution');
    err_case('GET', '/v2/cache/library/unknown/tags/list', 404, 'NAME_UNKNOWN',
             undef, 'tags/list of an unknown repository');
    err_case('GET', '/v2/nope/x/tags/list', 404, 'NAME_UNKNOWN', undef,
             'tags/list without a distribution');

    for my $name ('Library/hello', 'library/-hello', 'library/hello-',
                  'library/he___llo', 'library/he..llo', 'library/hello.') {
        err_case('GET', "/v2/cache/$name/manifests/1.0", 400, 'NAME_INVALID',
                 undef, "manifest, name '$name'");
    }
    err_case('GET', "/v2/cache/Library/hello/blobs/$z", 400, 'NAME_INVALID',
             undef, 'blob, invalid name');
    err_case('GET', "/v2/cache/Library/hello/tags/list", 400, 'NAME_INVALID',
             undef, 'tags/list, invalid name');

    for my $d ('sha256:abc', 'sha256:' . ('A' x 64), 'sha256:' . ('g' x 64),
               'md5:' . ('0' x 32), 'sha512:' . ('0' x 64), 'sha256',
               'notadigest', 'sha256:' . ('0' x 65)) {
        err_case('GET', "$hello/blobs/$d", 400, 'DIGEST_INVALID', undef,
                 "blob '" . substr($d, 0, 20) . "'");
    }
    err_case('HEAD', "$hello/blobs/sha256:abc", 400, undef, undef,
             'blob HEAD, bad digest');
    err_case('GET', "$hello/manifests/sha256:xyz", 400, 'DIGEST_INVALID', undef,
             'manifest by a bad digest');

    # valid names and tags unknown upstream: MANIFEST_UNKNOWN, not invalid
    for my $name ('library/he__llo', 'library/he--llo', 'library/he.llo',
                  'a/b/c/d/e', 'library/h3ll0') {
        err_case('GET', "/v2/cache/$name/manifests/1.0", 404, 'MANIFEST_UNKNOWN',
                 [ "GET /v2/$name/manifests/1.0" ], "valid name '$name'");
    }
    for my $tag ('_tag', 'T.a-g_1', '0') {
        err_case('GET', "$hello/manifests/$tag", 404, 'MANIFEST_UNKNOWN',
                 [ "GET /v2/library/hello/manifests/$tag" ], "valid tag '$tag'");
    }

    # what would change the upstream URL is no name, tag or digest
    err_case('GET', '/v2/cache/library/hello%3Fx=1/manifests/1.0', 400,
             'NAME_INVALID', undef, 'a name with a query');
    err_case('GET', '/v2/cache/library/hello%23x/manifests/1.0', 400,
             'NAME_INVALID', undef, 'a name with a fragment');
    err_case('GET', "$hello/manifests/1.0%3Fx=1", 404, 'MANIFEST_UNKNOWN',
             undef, 'a tag with a query');
    err_case('GET', "$hello/blobs/sha256:" . ('0' x 63) . '%3F', 400,
             'DIGEST_INVALID', undef, 'a digest with a query');

    # a tag no manifest can have: unknown (the spec's 404 for a GET or HEAD
    # of a manifest), without asking the upstream
    for my $tag ('-1.0', '.hidden', 'a' x 129) {
        err_case('GET', "$hello/manifests/$tag", 404, 'MANIFEST_UNKNOWN', undef,
                 'tag ' . substr($tag, 0, 10));
        err_case('HEAD', "$hello/manifests/$tag", 404, undef, undef,
                 'HEAD, tag ' . substr($tag, 0, 10));
    }
    like(v2('GET', "$hello/blobs/sha256:abc")->{json}{errors}[0]{message} // '',
         qr/invalid digest/, 'a malformed digest: the message says so');

    my $long = 'a' x 128;
    err_case('GET', "$hello/manifests/$long", 404, 'MANIFEST_UNKNOWN',
             [ "GET /v2/library/hello/manifests/$long" ],
             'a tag of 128 characters is valid (unknown upstream)');
    err_case('GET', "$hello/manifests/nope", 404, 'MANIFEST_UNKNOWN',
             [ 'GET /v2/library/hello/manifests/nope' ], 'unknown tag');
    err_case('GET', "$hello/manifests/$z", 404, 'MANIFEST_UNKNOWN',
             [ "GET /v2/library/hello/manifests/$z" ], 'unknown manifest digest');
    err_case('HEAD', "$hello/manifests/nope", 404, undef, [],
             'HEAD unknown tag, within pullthrough_negative_ttl of the GET');
    err_case('HEAD', "$hello/manifests/nope-too", 404, undef,
             [ 'HEAD /v2/library/hello/manifests/nope-too' ], 'HEAD unknown tag');
    err_case('GET', "$hello/blobs/$z", 404, 'BLOB_UNKNOWN',
             [ "GET /v2/library/hello/blobs/$z" ], 'unknown blob');
    err_case('HEAD', "$hello/blobs/$z", 404, undef, [],
             'HEAD unknown blob, within pullthrough_negative_ttl of the GET');
    my $z2 = 'sha256:' . ('1' x 64);
    err_case('HEAD', "$hello/blobs/$z2", 404, undef,
             [ "HEAD /v2/library/hello/blobs/$z2" ], 'HEAD unknown blob');
    err_case('GET', '/v2/cache/library/nothere/manifests/1.0', 404,
             'MANIFEST_UNKNOWN', [ 'GET /v2/library/nothere/manifests/1.0' ],
             'unknown upstream repository');

    ok(!-e blob_file($t, $z), 'nothing stored for unknown content');
    ok(!grep({ $_ eq 'cache/library/nothere' } @{ repo_names() }),
       'no repository for an upstream 404');
    is_oci_error(v2('GET', '/v2/cache/library/nothere/tags/list'), 404,
                 'NAME_UNKNOWN', 'no tags for an upstream 404');
    is(v2('GET', '/v2/cache/library/hello/whatever/1.0')->{status}, 404,
       'an unknown route: 404');
}


# read-only: every write method is UNSUPPORTED

{
    my $d = $hb->{layers}[0];
    $reg->reset_requests;
    for my $m (qw(PUT POST PATCH DELETE)) {
        for my $p ('/v2/', '/v2/cache/library/hello/manifests/1.0',
                   "/v2/cache/library/hello/blobs/$d",
                   '/v2/cache/library/hello/blobs/uploads/',
                   '/v2/cache/library/new/blobs/uploads/',
                   '/v2/_catalog', '/v2/nope/x/manifests/1.0') {
            is_oci_error(v2($m, $p, body => '{}',
                            headers => { 'Content-Type' => $MT{oci_manifest} }),
                         405, 'UNSUPPORTED', "$m $p: 405 UNSUPPORTED");
        }
    }
    is_deeply(upstream(), [], 'write methods: nothing upstream');
    my $r = v2('GET', '/v2/cache/library/hello/manifests/1.0',
               headers => { Accept => $ACCEPT });
    is($r->{content}, $img->{'library/hello:1.0'}{raw},
       'the cached manifest is unchanged');
}


# the catalog and tag lists, from what was cached, with pagination

sub links {
    my ($r) = @_;
    my $l = $r->{headers}{link} // return undef;
    my ($url) = $l =~ /^<([^>]+)>;\s*rel="next"$/ or return "bad: $l";
    return $url;
}

# follows Link headers from $path; returns ([items of each page], [links])
sub walk {
    my ($path, $key) = @_;
    my (@pages, @links);
    while (defined $path) {
        my $r = v2('GET', $path);
        is($r->{status}, 200, "GET $path: 200") or last;
        push @pages, $r->{json}{$key};
        $path = links($r);
        push @links, $path;
        last if @pages > 10;
    }
    return (\@pages, \@links);
}

{
    v2('GET', '/v2/mirror/library/hello/manifests/1.0',
       headers => { Accept => $ACCEPT });

    my @repos = ('cache/library/hello', 'cache/library/multi', 'cache/team/app',
                 'cache/team/multi', 'mirror/library/hello');

    my $r = v2('GET', '/v2/_catalog');
    is_deeply($r->{json}, { repositories => \@repos }, '_catalog: every cached repository, sorted');
    is(links($r), undef, '_catalog: no Link when complete');
    like($r->{headers}{'content-type'}, qr{^application/json}, '_catalog: JSON');

    my ($pages, $links) = walk('/v2/_catalog?n=2', 'repositories');
    is_deeply($pages, [ [ @repos[0, 1] ], [ @repos[2, 3] ], [ $repos[4] ] ],
              '_catalog?n=2: three pages by Link');
    like($links->[0] // '', qr{^/v2/_catalog\?(?=.*\bn=2\b)(?=.*\blast=cache(?:%2F|/)library(?:%2F|/)multi\b)},
         '_catalog?n=2: Link to the next page');
    is($links->[-1], undef, '_catalog?n=2: no Link on the last page');

    $r = v2('GET', '/v2/_catalog?n=5');
    is_deeply($r->{json}{repositories}, \@repos, '_catalog?n=5: all');
    is(links($r), undef, '_catalog?n=5: no Link');
    $r = v2('GET', '/v2/_catalog?n=100');
    is_deeply($r->{json}{repositories}, \@repos, '_catalog?n=100: all');
    $r = v2('GET', '/v2/_catalog?last=cache/team/app');
    is_deeply($r->{json}{repositories}, [ @repos[3, 4] ], '_catalog?last=: after it');
    $r = v2('GET', '/v2/_catalog?n=1&last=cache%2Fteam%2Fmulti');
    is_deeply($r->{json}{repositories}, [ $repos[4] ], '_catalog?n=1&last=(escaped)');
    is(links($r), undef, '... the last page: no Link');
    $r = v2('GET', '/v2/_catalog?last=zzz');
    is_deeply($r->{json}, { repositories => [] }, '_catalog?last= past the end: empty');

    $r = v2('GET', '/v2/cache/library/hello/tags/list');
    is_deeply($r->{json}, { name => 'cache/library/hello',
                            tags => [qw(1.0 1.1 latest)] }, 'tags/list: sorted');
    is(links($r), undef, 'tags/list: no Link when complete');

    ($pages, $links) = walk('/v2/cache/library/hello/tags/list?n=2', 'tags');
    is_deeply($pages, [ [qw(1.0 1.1)], [qw(latest)] ], 'tags/list?n=2: two pages by Link');
    like($links->[0] // '', qr{^/v2/cache/library/hello/tags/list\?(?=.*\bn=2\b)(?=.*\blast=1\.1\b)},
         'tags/list?n=2: Link to the next page');
    ($pages) = walk('/v2/cache/library/hello/tags/list?n=1', 'tags');
    is_deeply($pages, [ ['1.0'], ['1.1'], ['latest'] ], 'tags/list?n=1: three pages');
    $r = v2('GET', '/v2/cache/library/hello/tags/list?n=3');
    is(links($r), undef, 'tags/list?n=3 of 3: no Link');
    $r = v2('GET', '/v2/cache/library/hello/tags/list?n=0');
    is_deeply([ $r->{status}, $r->{json}{tags}, links($r) ], [ 200, [], undef ],
              'tags/list?n=0: no tags, no Link');
    is_oci_error(v2('GET', '/v2/cache/library/nothere/tags/list?n=0'), 404, 'NAME_UNKNOWN',
                 'tags/list?n=0 of an unknown repository: 404 NAME_UNKNOWN');
    $r = v2('GET', '/v2/_catalog?n=0');
    is_deeply([ $r->{status}, $r->{json}{repositories}, links($r) ], [ 200, [], undef ],
              '_catalog?n=0: no repositories, no Link');
    $r = v2('GET', '/v2/cache/library/hello/tags/list?last=1.0');
    is_deeply($r->{json}{tags}, [qw(1.1 latest)], 'tags/list?last=1.0');

    $r = v2('GET', '/v2/cache/team/app/tags/list');
    is_deeply($r->{json}{tags}, [qw(1.0 latest)], 'team/app tags: the pulled ones');
    $r = v2('GET', '/v2/cache/library/multi/tags/list');
    is_deeply($r->{json}{tags}, ['1.0'], 'multi tags: children by digest are no tags');
    $r = v2('GET', '/v2/mirror/library/hello/tags/list');
    is_deeply($r->{json}, { name => 'mirror/library/hello', tags => ['1.0'] },
              'tags/list under another distribution');
}


# every answer carried the API version header

{
    my @missing = grep { ($_->[1]{headers}{'docker-distribution-api-version'} // '')
                         ne 'registry/2.0' } @responses;
    is_deeply([ map { "$_->[0] -> $_->[1]{status}" } @missing ], [],
              'Docker-Distribution-API-Version on every answer ('
              . scalar(@responses) . ')');
}

$t->stop;
$reg->stop;

done_testing;
