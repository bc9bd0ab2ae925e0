#!/usr/bin/perl

# The debug log of a pull: with "error_log ... debug", a miss leaves a line
# for each step of its fills (created, to the thread pool, written, the
# verdict, committed), of their readers (attached, finished) and of its
# exchanges (each try, done), through nginx's proxy module and through
# libcurl (a remote with a CA of its own), whose transfers leave theirs
# (created, header, body, finished, cleaned up).

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);

use PT::Nginx;
use PT::Pulp;
use PT::Registry;
use PT::Images;
use PT::Pull;
use PT::Util qw(need_tools slurp);

need_tools(qw(docker-registry skopeo openssl));

# debug lines need an nginx built --with-debug (Debian's is)
plan(skip_all => "$PT::Nginx::NGINX is not built --with-debug")
    unless `$PT::Nginx::NGINX -V 2>&1` =~ /--with-debug/;

my $tmp = tempdir('pt-150-XXXXXXXX', TMPDIR => 1, CLEANUP => !$ENV{PT_KEEP});

my $reg = PT::Registry->new->start;
my $img = PT::Images::seed($reg, qw(hello app multi));

# the fills' own lines go to the cycle's log: debug at the main level
my $t = PT::Nginx->new(conf => cache_conf(
    main => "error_log %%TESTDIR%%/debug.log debug;\n"));
$t->start;

# through the proxy module whatever PT_TRANSPORT says; through libcurl with
# a CA of the remote's own (an http upstream does not use it)
my $proxy;
{
    local $ENV{PT_TRANSPORT};
    $proxy = setup_cache($t, $reg->url, base_path => 'proxy');
}
my ($ca) = make_cert($tmp, 'pt-150-ca');
setup_cache($t, $reg->url, base_path => 'curl',
            remote => { ca_cert => $ca });

# the module's lines of the debug log, as read last
my @log;

sub read_log {
    @log = grep { /\[debug\] .* pullthrough / } split /\n/,
        slurp($t->dir . '/debug.log');
    return scalar @log;
}

# those that say "pullthrough <part>: <text>"
sub traces {
    my ($part, $re) = @_;
    return grep { / pullthrough \Q$part\E: $re/ } @log;
}

sub pull {
    my ($base, $ref) = @_;
    my ($rc, $out) = skopeo('copy', '--quiet', '--src-tls-verify=false',
                            'docker://' . cache_ref($t, $ref, $base),
                            "dir:$tmp/$base");
    is($rc, 0, "skopeo copy $ref through $base") or diag($out);
}

# each state of the fill of every blob of $ref, and of its client
sub check_fills {
    my ($ref, $transport) = @_;
    my $i = $img->{$ref};

    for my $d ($i->{config}, @{ $i->{layers} }) {
        my $q = quotemeta $d;

        # the last lines come as the client gets the last byte
        wait_for(sub { read_log() && traces('reader', qr/$q finished/) },
                 5, "the reader of $d to finish");

        my $try = qr/GET "[^"]*\/blobs\/$q" through the $transport transport/;
        ok(traces('exchange', qr/$try, try 1$/),
           "$d: the exchange's first try, through the $transport transport");
        ok(traces('exchange', qr/done: 0, "[^"]*\/blobs\/$q"$/),
           "$d: the exchange is done");
        ok(traces('fill', qr/$q for "[^"]+" created/), "$d: fill created");
        ok(traces('fill', qr/$q upstream header, length \d+$/),
           "$d: the upstream's header");
        ok(traces('fill', qr/$q \d+ bytes at \d+ to a thread$/),
           "$d: a buffer to a thread");
        ok(traces('fill', qr/$q \d+ bytes written, \d+ in all$/),
           "$d: a buffer written");
        ok(traces('fill', qr/$q complete, \d+ bytes: verdict/),
           "$d: the verdict to a thread");
        ok(traces('fill', qr/$q verdict: digest match$/),
           "$d: the verdict, a match");
        ok(traces('fill', qr/$q committed: renamed into place, \d+ bytes$/),
           "$d: committed");
        ok(traces('reader', qr/attached to $q, \d+ written$/),
           "$d: a reader attached");
        ok(traces('reader', qr/$q finished, sent all: -?\d+, \d+ bytes/),
           "$d: its reader sent all");
    }

    ok(!traces('fill', qr/failed/), "$ref: no fill failed");
}


# a miss through nginx's proxy module

pull('proxy', 'library/hello:1.0');
check_fills('library/hello:1.0', 'subrequest');

ok(traces('subrequest', qr/[0-9A-F]+ for "[^"]+"$/),
   'a subrequest per try');


# a miss through libcurl

pull('curl', 'team/app:1.0');
check_fills('team/app:1.0', 'libcurl');

for (['created for "[^"]+\/blobs\/sha256:[0-9a-f]+": easy handle [0-9A-F]+$',
      'an easy handle created'],
     ['step asked of the driver', 'a step asked of the driver'],
     ['step done: \d+ bytes', 'a step done'],
     ['header received: 200, \d+ bytes', 'a header received'],
     ['\d+ body bytes to the exchange', 'body bytes to the exchange'],
     ['finished: CURLcode 0, rc 0$', 'a transfer finished'],
     ['given back to the driver$', 'a transfer given back to the driver'],
     ['let go by the driver$', 'a transfer let go by the driver'])
{
    my ($re, $what) = @$_;
    ok(traces('curl', qr/[0-9A-F]+ $re/), "libcurl: $what");
}


# a tag checked again (tag_ttl 0: at every request)

is($t->patch($proxy->{remote_obj}{pulp_href}, { tag_ttl => 0 })->{status}, 202,
   'tag_ttl 0 on the remote');
my $accept = { Accept => $PT::Images::ACCEPT };
is($t->get('/v2/proxy/library/hello/manifests/1.0', headers => $accept)->{status}, 200,
   'the cached tag asked for again');
read_log();
ok(traces('manifest', qr/"proxy\/library\/hello:1\.0" expired, revalidating sha256:[0-9a-f]{64}$/),
   'manifest: expired, revalidating');
ok(traces('flight', qr/\d+ taken$/), 'flight: taken');
ok(traces('flight', qr/\d+ landed: 0$/), 'flight: landed');
ok(traces('content', qr/tag "proxy\/library\/hello:1\.0" confirmed$/), 'content: the tag confirmed');

# an index by tag: the manifests it lists

is($t->get('/v2/proxy/library/multi/manifests/1.0', headers => $accept)->{status}, 200,
   'an index by tag');
ok(wait_for(sub { read_log() && traces('index', qr/the manifests of "proxy\/library\/multi:1\.0" fetched$/) }, 10),
   'index: all its manifests fetched');
ok(traces('index', qr/"proxy\/library\/multi:1\.0" lacks 2 manifests$/), 'index: two lacking');
is(scalar(traces('index', qr/fetching sha256:[0-9a-f]{64}$/)), 2, 'index: each fetched');
ok(traces('content', qr/"proxy\/library\/multi" at version \d+$/), 'content: one version after them');

# a remembered 404

$t->get('/v2/proxy/library/hello/manifests/nope') for 1 .. 2;
read_log();
ok(traces('manifest', qr/"proxy\/library\/hello:nope" is known missing$/),
   'manifest: a 404 remembered');

$t->stop;

done_testing;
