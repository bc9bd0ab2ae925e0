#!/usr/bin/perl

# Attacks from an upstream (or a token realm) that lies, each a fault found
# by attacking the cache, kept out: manifests typed text/html (stored XSS
# on the admin API's origin), manifests nested deep enough to take a
# worker's stack, redirects that would carry the remote's credentials and
# custom headers elsewhere (another host, another port, https to http, a
# protocol-relative Location), tokens with a line break in them, and a
# manifest naming a blob that another distribution cached, to read it
# without having it. The fake upstreams are here only to lie.

use strict;
use warnings;

use Test::More;
use Digest::SHA qw(sha256_hex);
use File::Temp qw(tempdir);
use MIME::Base64 qw(encode_base64);

use PT::Nginx;
use PT::Pulp;
use PT::Images;
use PT::FakeUpstream;
use PT::Certs;
use PT::Stunnel;
use PT::Pull;
use PT::Util qw(need_tools);

need_tools(qw(openssl stunnel));

my $ACCEPT = $PT::Images::ACCEPT;
my $tmp = tempdir('pt-310-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

my $L = PT::Images::build('hello');
my $h10 = $L->{refs}{'hello-1.0'};
my $layer = $h10->{layers}[0];

# manifests of our own, served by the fake as blobs of its blob_dirs
my %extra;
sub extra {
    my ($bytes) = @_;
    my $d = 'sha256:' . sha256_hex($bytes);
    $extra{$d} = $bytes;
    return $d;
}

my $html_typed = extra('{"schemaVersion":2,"mediaType":"text/html","config":{"digest":"'
                       . $h10->{config} . '"},"layers":[]}');
my $deep = extra('{"schemaVersion":2,"x":' . ('[' x 100_000) . (']' x 100_000) . '}');

# a blob the upstream cuts short, after a pause
my $cut = $L->{refs}{'hello-1.1'}{layers}[1];

# the one that lies; "other" is where its redirects lead
my $other = PT::FakeUpstream->new(blob_dirs => [ "$L->{dir}/blobs" ])->start;
my $fake;
$fake = PT::FakeUpstream->new(
    blob_dirs => [ "$L->{dir}/blobs" ],
    blobs => \%extra,
    tags => { 'library/hello:html' => $h10->{digest}, 'library/hello:typed' => $html_typed,
              'library/hello:deep' => $deep },
    hook => sub {
        my ($req, $f) = @_;
        my $p = $req->{path};
        my $to = $f->flag('redirect');

        if ($p =~ m{/manifests/html$}) {
            my $a = $f->default_answer($req);
            $a->[1] = [ 'Content-Type' => 'text/html', 'Docker-Content-Digest' => $h10->{digest} ];
            return $a;
        }
        if ($p =~ m{/manifests/typed$}) {
            my $a = $f->default_answer($req);
            $a->[1] = [ 'Content-Type' => 'text/html; charset=utf-8',
                        'Docker-Content-Digest' => $html_typed ];
            return $a;
        }
        return PT::FakeUpstream::error(500, 'UNKNOWN') if $p =~ m{/blobs/sha256:5{64}$};
        if ($p =~ m{/blobs/(sha256:[0-9a-f]+)$} && $1 eq $cut) {
            return [ 200, [ 'Content-Type' => 'application/octet-stream' ],
                     { file => $f->blob_file($1), pause_at => 1024,
                       wait_flag => 'cut', truncate => 4096 } ];
        }
        if (defined $to && $p =~ m{/blobs/(sha256:[0-9a-f]+)$}) {
            return [ 307, [ Location => "$to/v2/library/hello/blobs/$1" ], '' ];
        }
        return undef;
    },
)->start;

my $t = PT::Nginx->new(conf => cache_conf(registry => 'proxy_read_timeout 5s;'));
$t->start;
setup_cache($t, $fake->url, remote => { max_retries => 0, username => 'u', password => 'secret',
                                        headers => [ { 'X-Api-Key' => 'key-123' } ] });

sub get { $t->get("/v2/cache/library/hello/$_[0]", headers => { Accept => $ACCEPT }) }
sub get_from { $t->get("/v2/$_[0]/library/hello/$_[1]", headers => { Accept => $ACCEPT }) }

# --- stored XSS ---

my $r = get('manifests/html');
is($r->{status}, 200, 'a manifest the upstream calls text/html');
is($r->{headers}{'content-type'}, $PT::Images::MT{oci_manifest}, '... is served as its own type');
is($r->{headers}{'x-content-type-options'}, 'nosniff', '... with nosniff');
$r = get("manifests/$h10->{digest}");
is($r->{headers}{'content-type'}, $PT::Images::MT{oci_manifest}, '... from the cache too');

$r = get('manifests/typed');
is($r->{status}, 200, 'a manifest whose mediaType and Content-Type are text/html');
is($r->{headers}{'content-type'}, $PT::Images::MT{oci_manifest},
   '... is served as the type of its shape');
$r = get("blobs/$layer");
is($r->{headers}{'content-type'}, 'application/octet-stream', 'blobs: application/octet-stream');
is($r->{headers}{'x-content-type-options'}, 'nosniff', '... with nosniff');
$r = $t->get('/pulp/api/v3/remotes/container/pull-through/');
is($r->{headers}{'x-content-type-options'}, 'nosniff', 'the admin API answers with nosniff');

# --- a manifest nested 100,000 deep ---

$r = get('manifests/deep');
is_oci_error($r, 502, 'MANIFEST_INVALID', 'a manifest nested 100,000 levels: 502 MANIFEST_INVALID');
is(get('manifests/html')->{status}, 200, '... the worker still serves');

# --- redirects and credentials ---

sub redirected_to {
    my ($target, $digest) = @_;
    $fake->set_flag('redirect', $target);
    $fake->reset_requests;
    $other->reset_requests;
    my $x = get("blobs/$digest");
    $fake->clear_flag('redirect');
    return $x;
}

my $b1 = $h10->{layers}[1];
$r = redirected_to($other->url, $b1);
is($r->{status}, 200, 'a blob redirected to another port: fetched there');
my ($sent) = $other->requests;
ok($sent && !defined $sent->{headers}{authorization}, '... without the credentials');
ok($sent && !defined $sent->{headers}{'x-api-key'}, '... without the custom headers');

# protocol-relative: "//127.0.0.1:OTHER/..." is the other server, not a path
(my $rel = $other->url) =~ s{^http:}{};
$r = redirected_to($rel, $h10->{config});
is($r->{status}, 200, 'a protocol-relative Location: followed');
ok(scalar($other->requests_matching('GET', qr{/blobs/})),
   '... to the host it names, not as a path on the first (RFC 3986)');

# https to http: refused
mkdir "$tmp/ca";
my $ca = PT::Certs->new(dir => "$tmp/ca");
my $srv = $ca->server(name => 'srv', ip => ['127.0.0.1']);
my $tls = PT::Stunnel->new(cert => $srv->{cert}, key => $srv->{key},
                           connect => $fake->port)->start;
setup_cache($t, $tls->url, base_path => 'tls',
            remote => { max_retries => 0, tls_validation => JSON::PP::false,
                        username => 'u', password => 'secret' });
$fake->set_flag('redirect', $other->url);
$other->reset_requests;
$r = $t->get("/v2/tls/library/hello/blobs/sha256:" . ('ab' x 32));
isnt($r->{status}, 200, 'an https upstream redirecting to http: refused');
is(scalar($other->requests), 0, '... nothing sent in clear');
like($t->error_log, qr/https is never left for http/, '... logged');
$fake->clear_flag('redirect');

# --- an upstream failing a blob: the client's gateway failed ---

$r = get('blobs/sha256:' . ('5' x 64));
is_oci_error($r, 502, 'UNAVAILABLE', 'an upstream 500 for a blob: 502 UNAVAILABLE, in JSON');

# --- a fill cut short: every client of it is ended at once ---

my @bg = map {
    my $flag = $t->dir . "/started-$_";
    { flag => $flag,
      h => bg_stream_get($t, "/v2/cache/library/hello/blobs/$cut?client=$_", started => $flag) }
} 1 .. 2;
ok(wait_for(sub { -e $bg[0]{flag} && -e $bg[1]{flag} }, 10),
   'two clients of one fill have their first bytes');
$fake->set_flag('cut', 1);
my @res = map { bg_result($_->{h}, 15) } @bg;
for my $i (0, 1) {
    ok($res[$i]{status} != 599 && $res[$i]{seconds} < 10,
       sprintf('client %d of the cut fill: ended promptly (%.1f s)', $i + 1, $res[$i]{seconds} // -1));
    ok(!$res[$i]{complete}, '... without a complete body');
}

# --- a token realm whose token would split a header line ---

my $realm = PT::FakeUpstream->new(hook => sub {
    return [ 200, [ 'Content-Type' => 'application/json' ],
             '{"token":"abc\r\nX-Evil: 1","expires_in":300}' ];
})->start;
my $guarded = PT::FakeUpstream->new(hook => sub {
    my ($req) = @_;
    return [ 401, [ 'WWW-Authenticate' => 'Bearer realm="' . $realm->url
                    . '/token",service="x",scope="repository:library/hello:pull"' ], '' ]
        unless $req->{headers}{authorization};
    return [ 404, [], '' ];
})->start;
setup_cache($t, $guarded->url, base_path => 'tok', remote => { max_retries => 0 });
$r = get_from('tok', 'manifests/1.0');
isnt($r->{status}, 200, 'a token with CR LF in it: the pull fails');
ok(scalar($realm->requests), '... after asking the realm');
is(scalar(grep { $_->{headers}{authorization} || $_->{headers}{'x-evil'} } $guarded->requests), 0,
   '... and the token never reaches the registry');

# --- a manifest naming another distribution's blob ---

# the honest distribution caches a blob; the thief's upstream names it in
# a manifest of its own but does not have it
setup_cache($t, $other->url, base_path => 'honest', remote => { max_retries => 0 });
my $private = $h10->{layers}[0];
is(get_from('honest', "blobs/$private")->{status}, 200, 'a blob cached through one distribution');
my $bait = '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
         . '"config":{"digest":"' . $private . '","size":1},"layers":[]}';
my $thief = PT::FakeUpstream->new(blobs => { 'sha256:' . sha256_hex($bait) => $bait },
                                  tags => { 'library/hello:bait' => 'sha256:' . sha256_hex($bait) })->start;
setup_cache($t, $thief->url, base_path => 'thief', remote => { max_retries => 0 });
is(get_from('thief', 'manifests/bait')->{status}, 200, 'another upstream\'s manifest names it');
$r = get_from('thief', "blobs/$private");
is_oci_error($r, 404, 'BLOB_UNKNOWN', '... but its blob is not served from the other cache');
ok(scalar($thief->requests_matching('HEAD', qr{/blobs/\Q$private\E$})),
   '... its own upstream was asked, and does not have it');

$t->stop;
$t->check_error_log;

done_testing;
