#!/usr/bin/perl

# Upstream access, bearer tokens: Debian's docker-registry configured for
# token auth (auth: token, rootcertbundle = the certificate of a test token
# issuer, PT::TokenIssuer, whose JWTs carry it in x5c) behind the cache.
#
# The harness is checked first against the registry directly (curl-like
# token dance, skopeo pull and push with credentials). Then, through nginx
# with two workers: a pull through a remote with credentials; one token
# request per scope for many misses on both workers (the token is in shared
# memory); a new token after expires_in; expires_in absent; access_token
# only; a token of remote A never sent for remote B (B asks the issuer with
# its own credentials; a remote with no or wrong credentials gets 401
# UNAUTHORIZED, not A's token); no secret in nginx's logs.
#
# Remotes whose token use is checked point at a logging proxy in front of
# the registry (PT::FakeUpstream with a forwarding hook): its log has the
# Authorization header of every upstream request, whose JWT names (sub) the
# user it was issued to. Each remote has a user of its own at the issuer,
# so the issuer's log tells which remote asked for a token.

use strict;
use warnings;

use Test::More;
use Digest::SHA qw(sha256_hex);
use File::Temp qw(tempdir);
use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP;
use MIME::Base64 qw(encode_base64 decode_base64);
use Time::HiRes qw(sleep time);

use PT::Nginx;
use PT::Pulp;
use PT::Registry;
use PT::Images;
use PT::Pull;
use PT::FakeUpstream;
use PT::TokenIssuer;
use PT::Util qw(need_tools);

need_tools(qw(docker-registry skopeo openssl));

my $JSON = JSON::PP->new->utf8->canonical;
my $ACCEPT = $PT::Images::ACCEPT;
my $tmp = tempdir('pt-210-XXXXXXXX', TMPDIR => 1, CLEANUP => !$ENV{PT_KEEP});
$PT::Pull::CMD_TIMEOUT = 60;

# one issuer user per remote: the issuer's log says which remote asked
my @USERS = qw(u-tok u-shared u-cold u-exp u-noexp u-atok u-a u-b u-retry
               u-giveup);
my %PW = map { $_ => "pw-$_-" . join('', map { ('a' .. 'z')[rand 26] } 1 .. 12) }
         @USERS;
my $WRONG_PW = 'wrong-' . join('', map { ('a' .. 'z')[rand 26] } 1 .. 12);

my $iss = PT::TokenIssuer->new(users => \%PW)->start;
my $reg = PT::Registry->new(token => { %{ $iss->registry_token },
                                       user => 'u-tok',
                                       password => $PW{'u-tok'} });
# PT::Images reads back with Basic credentials: seed with auth off
my $img = $reg->without_auth(sub { PT::Images::seed($reg, 'hello') });

my $h10 = $img->{'library/hello:1.0'};
my $h11 = $img->{'library/hello:1.1'};
my $SCOPE = 'repository:library/hello:pull';

sub jwt_part {
    my ($jwt, $i) = @_;
    my $p = (split /\./, $jwt // '')[$i] // return undef;
    $p =~ tr{-_}{+/};
    $p .= '=' x ((4 - length($p) % 4) % 4);
    return eval { $JSON->decode(decode_base64($p)) };
}

sub basic { 'Basic ' . encode_base64(join(':', @_), '') }

sub random_digest { 'sha256:' . sha256_hex(rand() . $$ . time . shift) }


###########################################################################
# the harness, against the registry directly

{
    my $ua = HTTP::Tiny->new(timeout => 30);

    my $r = $ua->get($reg->url . '/v2/library/hello/manifests/1.0',
                     { headers => { Accept => $ACCEPT } });
    is($r->{status}, 401, 'registry: anonymous manifest GET is refused');
    my $chal = $r->{headers}{'www-authenticate'} // '';
    my %c;
    $c{$1} = $2 while $chal =~ /(\w+)="([^"]*)"/g;
    like($chal, qr/^Bearer /, 'registry: Bearer challenge');
    is_deeply(\%c, { realm => $iss->realm, service => 'pt-test',
                     scope => $SCOPE },
              'registry: challenge names realm, service and scope')
        or diag($chal);

    my $turl = "$c{realm}?service=$c{service}&scope="
        . 'repository%3Alibrary%2Fhello%3Apull';
    my $tr = $ua->get($turl, { headers => {
        Authorization => basic('u-tok', $PW{'u-tok'}) } });
    is($tr->{status}, 200, 'issuer: token with the right credentials');
    my $tj = eval { $JSON->decode($tr->{content}) } || {};
    ok($tj->{token} && $tj->{access_token} && $tj->{expires_in} == 300,
       'issuer: token, access_token, expires_in');

    my $hdr = jwt_part($tj->{token}, 0) || {};
    my $cl = jwt_part($tj->{token}, 1) || {};
    is_deeply([ @$hdr{qw(alg typ)} ], [ 'RS256', 'JWT' ], 'JWT: RS256');
    is_deeply($hdr->{x5c}, [ $iss->x5c ], 'JWT: x5c is the certificate');
    is_deeply([ @$cl{qw(iss sub aud)} ], [ 'pt-issuer', 'u-tok', 'pt-test' ],
              'JWT: iss, sub, aud');
    is_deeply($cl->{access}, [ { type => 'repository', name => 'library/hello',
                                 actions => ['pull'] } ],
              'JWT: access from the scope');

    $r = $ua->get($reg->url . '/v2/library/hello/manifests/1.0',
                  { headers => { Accept => $ACCEPT,
                                 Authorization => "Bearer $tj->{token}" } });
    is($r->{status}, 200, 'registry: accepts the token');
    is($r->{headers}{'docker-content-digest'}, $h10->{digest},
       'registry: the seeded manifest');

    # a signature the registry cannot verify: the registry does check
    my $bad = $tj->{token};
    substr($bad, -5, 1) = substr($bad, -5, 1) eq 'A' ? 'B' : 'A';
    $r = $ua->get($reg->url . '/v2/library/hello/manifests/1.0',
                  { headers => { Accept => $ACCEPT,
                                 Authorization => "Bearer $bad" } });
    is($r->{status}, 401, 'registry: refuses a token with a bad signature');

    # a token for another repository does not open this one
    my $or = $ua->get("$c{realm}?service=pt-test&scope=repository%3Aother%3Apull",
                      { headers => { Authorization => basic('u-tok', $PW{'u-tok'}) } });
    my $other = eval { $JSON->decode($or->{content})->{token} } // '';
    $r = $ua->get($reg->url . '/v2/library/hello/manifests/1.0',
                  { headers => { Accept => $ACCEPT,
                                 Authorization => "Bearer $other" } });
    is($r->{status}, 401, 'registry: refuses a token for another scope');

    $tr = $ua->get($turl, { headers => {
        Authorization => basic('u-tok', 'nope') } });
    is($tr->{status}, 401, 'issuer: 401 with wrong credentials');
    $tr = $ua->get($turl);
    is($tr->{status}, 401, 'issuer: 401 without credentials');

    my ($rc, $out) = skopeo('copy', '--quiet', '--src-tls-verify=false',
                            '--src-creds', "u-tok:$PW{'u-tok'}",
                            'docker://' . $reg->host . '/library/hello:1.0',
                            "dir:$tmp/direct");
    is($rc, 0, 'skopeo pulls from the registry with a token') or diag($out);
    is(file_digest("$tmp/direct/manifest.json"), $h10->{digest},
       'skopeo: the seeded manifest');

    $iss->reset_requests;
    ($rc, $out) = skopeo('copy', '--quiet', '--src-tls-verify=false',
                         '--dest-tls-verify=false',
                         '--src-creds', "u-tok:$PW{'u-tok'}",
                         '--dest-creds', "u-tok:$PW{'u-tok'}",
                         'docker://' . $reg->host . '/library/hello:1.0',
                         'docker://' . $reg->host . '/team/pushed:1.0');
    is($rc, 0, 'skopeo pushes to the registry with a token') or diag($out);
    ok(scalar $iss->token_requests(user => 'u-tok',
                                   scope => qr/^repository:team\/pushed:.*push/),
       'issuer: skopeo asked for (and got) push');
    $r = $reg->get('/v2/team/pushed/manifests/1.0',
                   headers => { Accept => $ACCEPT });
    is($r->{headers}{'docker-content-digest'}, $h10->{digest},
       'registry: the pushed manifest');
}


###########################################################################
# a logging proxy in front of the registry: its log has the Authorization
# header of every request the cache sends upstream

my $regurl = $reg->url;
my %HOP = map { $_ => 1 } qw(host connection keep-alive te trailer
                             transfer-encoding upgrade content-length
                             proxy-connection);

my $proxy = PT::FakeUpstream->new(hook => sub {
    my ($req) = @_;
    my %h = map { $_ => $req->{headers}{$_} }
            grep { !$HOP{$_} } keys %{ $req->{headers} };
    my $res = HTTP::Tiny->new(timeout => 60, max_redirect => 0, agent => '')
        ->request($req->{method}, $regurl . $req->{uri}, { headers => \%h });
    return [ 502, [], "proxy: $res->{content}" ] if $res->{status} == 599;
    my @out;
    for my $k (qw(content-type content-length docker-content-digest
                  docker-distribution-api-version www-authenticate location
                  etag retry-after))
    {
        my $v = $res->{headers}{$k};
        next unless defined $v;
        push @out, $k => $_ for ref $v ? @$v : $v;
    }
    return [ $res->{status}, \@out, $res->{content} // '' ];
})->start;

# the users whose tokens came with the proxy's requests: (sub, ...) of the
# Bearer JWTs, one per request that carried one
sub proxy_token_users {
    return map {
        my $a = $_->{headers}{authorization} // '';
        $a =~ /^Bearer\s+(\S+)/i ? (jwt_part($1, 1) || {})->{sub} // '?' : ();
    } $proxy->requests;
}

sub proxy_tokens {
    return map {
        my $a = $_->{headers}{authorization} // '';
        $a =~ /^Bearer\s+(\S+)/i ? $1 : ();
    } $proxy->requests;
}

sub uniq { my %s; grep { !$s{$_}++ } @_ }


###########################################################################
# the cache

my $t = PT::Nginx->new(conf => cache_conf(workers => 2));
$t->start;

sub remote {
    my ($base, $url, $user, $pw) = @_;
    return setup_cache($t, $url, base_path => $base,
                       remote => { defined $user
                                   ? (username => $user, password => $pw)
                                   : () });
}

remote('tok', $reg->url, 'u-tok', $PW{'u-tok'});
remote('shared', $proxy->url, 'u-shared', $PW{'u-shared'});
remote('cold', $reg->url, 'u-cold', $PW{'u-cold'});
remote('exp', $reg->url, 'u-exp', $PW{'u-exp'});
remote('noexp', $reg->url, 'u-noexp', $PW{'u-noexp'});
remote('atok', $reg->url, 'u-atok', $PW{'u-atok'});
remote('ra', $proxy->url, 'u-a', $PW{'u-a'});
remote('rb', $proxy->url, 'u-b', $PW{'u-b'});
remote('anon', $proxy->url);
remote('retry', $reg->url, 'u-retry', $PW{'u-retry'});
my $giveup = remote('giveup', $reg->url, 'u-giveup', $PW{'u-giveup'});
remote('wrong', $proxy->url, 'u-a', $WRONG_PW);

# the token requests of a user: all sent with the user's own password
sub tokens_of {
    my ($user, %f) = @_;
    return $iss->token_requests(user => $user, %f);
}

sub creds_ok {
    my ($user, $what) = @_;
    my @r = tokens_of($user);
    my @bad = grep { ($_->{password} // '') ne $PW{$user} } @r;
    ok(@r && !@bad, "$what: token requests carry the remote's credentials")
        or diag(scalar(@r) . ' requests, ' . scalar(@bad) . ' with other credentials');
}

sub get_blob {
    my ($base, $digest) = @_;
    return http_get($t, "/v2/$base/library/hello/blobs/$digest");
}

sub get_manifest {
    my ($base, $ref) = @_;
    return http_get($t, "/v2/$base/library/hello/manifests/$ref",
                    headers => { Accept => $ACCEPT });
}


# a pull through a remote with credentials

{
    $iss->reset_requests;

    my ($rc, $out) = skopeo('copy', '--quiet', '--src-tls-verify=false',
                            'docker://' . cache_ref($t, 'library/hello:1.0', 'tok'),
                            "dir:$tmp/tok");
    is($rc, 0, 'token upstream: skopeo pulls through the cache') or diag($out);
    is(-f "$tmp/tok/manifest.json" ? file_digest("$tmp/tok/manifest.json") : 'missing',
       $h10->{digest}, 'token upstream: skopeo got the upstream manifest');
    for my $d ($h10->{config}, @{ $h10->{layers} }) {
        my $f = "$tmp/tok/" . substr($d, 7);
        is(-f $f ? file_digest($f) : 'missing', $d, "token upstream: skopeo blob $d");
    }

    my $r = get_manifest('tok', '1.1');
    is($r->{status}, 200, 'token upstream: GET manifest 1.1');
    is($r->{headers}{'docker-content-digest'}, $h11->{digest},
       'token upstream: the upstream digest');
    is(sha256_digest($r->{content}), $h11->{digest},
       'token upstream: the manifest bytes');

    $r = get_blob('tok', $h11->{layers}[1]);
    is($r->{status}, 200, 'token upstream: GET blob (a miss)');
    is(sha256_digest($r->{content}), $h11->{layers}[1],
       'token upstream: the blob bytes');

    ok(scalar tokens_of('u-tok', scope => $SCOPE),
       'token upstream: the issuer was asked for the repository scope');
    creds_ok('u-tok', 'token upstream');
    my @wrong_scope = grep { !grep { $_ eq $SCOPE } @{ $_->{scopes} } }
                      tokens_of('u-tok');
    is(scalar @wrong_scope, 0, "token upstream: every token request is for $SCOPE")
        or diag(join ' ', map { "[@{ $_->{scopes} }]" } @wrong_scope);
    is(scalar(grep { ($_->{service} // '') ne 'pt-test' } tokens_of('u-tok')), 0,
       'token upstream: service from the challenge');
}


# one token for many misses, through both workers

{
    $iss->reset_requests;
    $proxy->reset_requests;

    # the first miss gets the token
    my $r = get_blob('shared', $h10->{config});
    is($r->{status}, 200, 'shared token: first miss');
    is(scalar tokens_of('u-shared'), 1, 'shared token: one token request');

    # then misses in parallel until both workers have made some
    my @real = uniq($h10->{layers}[0], $h10->{layers}[1], $h11->{config},
                    $h11->{layers}[1]);
    my $mark = cache_log_mark($t);
    my %pids;
    my @bad;
    my $round = 0;
    while ($round++ < 12) {
        my @paths = map {
            my $d = @real ? shift @real : random_digest("$round-$_");
            $d;
        } 1 .. 8;
        my $res = parallel(scalar @paths, sub {
            my ($i) = @_;
            my $x = get_blob('shared', $paths[$i]);
            return { digest => $paths[$i], status => $x->{status},
                     sha => sha256_digest($x->{content}),
                     code => eval { $x->{json}{errors}[0]{code} } };
        });
        for my $x (@$res) {
            my $want_real = grep { $_ eq $x->{digest} }
                            $h10->{config}, @{ $h10->{layers} },
                            $h11->{config}, @{ $h11->{layers} };
            if ($want_real) {
                push @bad, $x unless $x->{status} == 200
                                  && $x->{sha} eq $x->{digest};
            } else {
                push @bad, $x unless $x->{status} == 404
                                  && ($x->{code} // '') eq 'BLOB_UNKNOWN';
            }
        }
        wait_for(sub { cache_log($t, $mark) >= 8 * $round }, 5);
        $pids{ $_->{pid} }++
            for grep { $_->{path} =~ m{^/v2/shared/} } cache_log($t, $mark);
        last if keys %pids >= 2 && $round >= 2;
    }
    is(scalar keys %pids, 2, 'shared token: both workers served misses')
        or diag(join ' ', %pids);
    is_deeply(\@bad, [], 'shared token: blobs 200 with their bytes, '
              . 'unknown ones 404 BLOB_UNKNOWN');
    is(scalar tokens_of('u-shared'), 1,
       'shared token: still one token request after misses on both workers')
        or diag(join "\n", map { "$_->{uri} pid=$_->{pid}" } tokens_of('u-shared'));
    is(scalar tokens_of('u-shared', scope => $SCOPE), 1,
       "shared token: ... for $SCOPE");
    creds_ok('u-shared', 'shared token');

    my @toks = uniq(proxy_tokens());
    is(scalar @toks, 1, 'shared token: every upstream request carried the same token')
        or diag(scalar(@toks) . ' different tokens');
    is_deeply([ uniq(proxy_token_users()) ], ['u-shared'],
              'shared token: the token issued to this remote');
    my @unauth = grep { $_->{path} =~ m{/blobs/} } $proxy->requests;
    note(sprintf '%d upstream blob requests, %d with a token',
         scalar @unauth, scalar grep { $_->{headers}{authorization} } @unauth);
}


# concurrent first misses on both workers: one token request between them
# (the others wait for it, in their worker or through the shared zone)

{
    $iss->reset_requests;
    my $mark = cache_log_mark($t);
    my @d = ($h10->{config}, @{ $h10->{layers} }, $h11->{config},
             $h11->{layers}[1], map { random_digest("cold-$_") } 1 .. 5);
    my $res = parallel(scalar @d, sub { get_blob('cold', $d[$_[0]])->{status} });
    my @st = sort { $a <=> $b } uniq(@$res);
    is_deeply(\@st, [ 200, 404 ], 'cold start: blobs 200, unknown ones 404')
        or diag("@$res");
    wait_for(sub { cache_log($t, $mark) >= @d }, 5);
    my %pids = map { $_->{pid} => 1 } cache_log($t, $mark);
    my $n = () = tokens_of('u-cold');
    note("cold start: $n token requests for " . scalar(@d)
         . ' parallel misses on ' . scalar(keys %pids) . ' workers');
    # misses wait for the one token request, in their worker or another
    is($n, 1, 'cold start: one token request for concurrent misses');
    creds_ok('u-cold', 'cold start');
}


# a realm that fails for a while: the token request is tried again, as
# exchanges are (max_retries, backoff); past max_retries the client gets a
# 502 (the upstream did not refuse anything: its realm failed)

{
    $iss->reset_requests;
    $iss->set(fail_next => 2);

    my $r = get_blob('retry', $h10->{config});
    is($r->{status}, 200, 'realm 503 twice: the miss still succeeds');
    my @tr = tokens_of('u-retry');
    is_deeply([ map { $_->{status} } @tr ], [ 503, 503, 200 ],
              '... after two more token requests')
        or diag(explain(\@tr));
    like($t->error_log, qr/token request to "[^"]+" failed: the realm answered 503, try 1 of 3/,
         '... each logged as a warning');

    my $p = $t->patch($giveup->{remote_obj}{pulp_href}, { max_retries => 1 });
    is($p->{status}, 202, 'max_retries 1');
    $iss->reset_requests;
    $iss->set(fail_next => 5);

    $r = get_blob('giveup', $h10->{config});
    is_oci_error($r, 502, 'UNAVAILABLE',
                 'realm failing past max_retries: 502, not a refusal');
    is(scalar(@tr = tokens_of('u-giveup')), 2, '... after 1 + 1 token requests');

    $iss->set(fail_next => undef);
}


# expiry: a token with expires_in 2 is used until then, not after

{
    $iss->set(expires_in => 2);
    $iss->reset_requests;

    my $r = get_blob('exp', $h10->{config});
    is($r->{status}, 200, 'expiry: first miss');
    my @tr = tokens_of('u-exp');
    is(scalar @tr, 1, 'expiry: one token request');
    my $issued = @tr ? $tr[0]{time} : time;

    $r = get_blob('exp', $h10->{layers}[0]);
    my $elapsed = time - $issued;
    is($r->{status}, 200, 'expiry: second miss, before expiry');
    if ($elapsed < 1) {
        is(scalar tokens_of('u-exp'), 1,
           'expiry: the token is used again before it expires');
    } else {
        note(sprintf 'expiry: the second miss came %.2f s after the token', $elapsed);
    }

    # expiry is a wall-clock property: wait for it (2 s at most)
    my $until = $issued + 2 + 0.2;
    sleep($until - time) if $until > time;

    $r = get_blob('exp', $h10->{layers}[1]);
    is($r->{status}, 200, 'expiry: a miss after expiry');
    is(scalar tokens_of('u-exp'), 2, 'expiry: a new token request after expiry')
        or diag(join "\n", map { sprintf '%.2f %s', $_->{time} - $issued, $_->{uri} }
                               tokens_of('u-exp'));
    creds_ok('u-exp', 'expiry');

    $iss->set(expires_in => 300);
}


# expires_in absent (60 s): the pull works with one token

{
    $iss->set(omit_expires_in => 1);
    $iss->reset_requests;

    my $r = get_manifest('noexp', '1.0');
    is($r->{status}, 200, 'no expires_in: manifest');
    is($r->{headers}{'docker-content-digest'}, $h10->{digest},
       'no expires_in: the upstream digest');
    $r = get_blob('noexp', $h10->{layers}[0]);
    is($r->{status}, 200, 'no expires_in: blob');
    is(sha256_digest($r->{content}), $h10->{layers}[0], 'no expires_in: blob bytes');
    $r = get_blob('noexp', $h10->{layers}[1]);
    is(sha256_digest($r->{content}), $h10->{layers}[1], 'no expires_in: another blob');
    is(scalar tokens_of('u-noexp'), 1, 'no expires_in: one token request');

    $iss->set(omit_expires_in => undef);
}


# only "access_token" in the answer

{
    $iss->set(only_access_token => 1);
    $iss->reset_requests;

    my $r = get_manifest('atok', '1.0');
    is($r->{status}, 200, 'access_token only: manifest');
    $r = get_blob('atok', $h10->{layers}[0]);
    is(sha256_digest($r->{content}), $h10->{layers}[0],
       'access_token only: blob bytes');
    is(scalar tokens_of('u-atok'), 1, 'access_token only: one token request');

    $iss->set(only_access_token => undef);
}


# remote A's token is never sent for remote B (same upstream url, same realm,
# service and scope)

{
    $iss->reset_requests;
    $proxy->reset_requests;

    my ($rc, $out) = skopeo('copy', '--quiet', '--src-tls-verify=false',
                            'docker://' . cache_ref($t, 'library/hello:1.0', 'ra'),
                            "dir:$tmp/ra");
    is($rc, 0, 'remote A: pull') or diag($out);
    ok(scalar tokens_of('u-a'), 'remote A: asked for a token');
    is_deeply([ uniq(proxy_token_users()) ], ['u-a'],
              "remote A: upstream requests carried A's token");
    my %a_tokens = map { $_ => 1 } proxy_tokens();

    $iss->reset_requests;
    $proxy->reset_requests;

    ($rc, $out) = skopeo('copy', '--quiet', '--src-tls-verify=false',
                         'docker://' . cache_ref($t, 'library/hello:1.0', 'rb'),
                         "dir:$tmp/rb");
    is($rc, 0, 'remote B: pull') or diag($out);
    is(-f "$tmp/rb/manifest.json" ? file_digest("$tmp/rb/manifest.json") : 'missing',
       $h10->{digest}, 'remote B: the upstream manifest');
    ok(scalar $proxy->requests, 'remote B: went upstream');
    ok(scalar tokens_of('u-b'), 'remote B: asked for a token of its own');
    creds_ok('u-b', 'remote B');
    is(scalar tokens_of('u-a'), 0, "remote B: never used A's credentials");
    my @users = uniq(proxy_token_users());
    is_deeply(\@users, ['u-b'], "remote B: upstream requests carried B's token only")
        or diag("tokens of: @users");
    is(scalar(grep { $a_tokens{$_} } proxy_tokens()), 0,
       "remote B: none of A's tokens went upstream");

    # and back: A still uses its own
    $proxy->reset_requests;
    my $r = get_manifest('ra', '1.1');
    is($r->{status}, 200, 'remote A again: manifest 1.1');
    is_deeply([ uniq(proxy_token_users()) ], ['u-a'],
              "remote A again: A's token only");
}


# no credentials, or wrong ones: 401 UNAUTHORIZED, A's token not borrowed,
# no loop

{
    $iss->reset_requests;
    $proxy->reset_requests;

    my $r = get_manifest('anon', '1.0');
    is_oci_error($r, 401, 'UNAUTHORIZED', 'no credentials: 401 UNAUTHORIZED');
    is_deeply([ proxy_token_users() ], [],
              'no credentials: no token went upstream');
    my @m = $proxy->requests_matching(undef, qr{/manifests/1\.0$});
    ok(@m >= 1 && @m <= 2, 'no credentials: at most one retry upstream')
        or diag(scalar(@m) . ' upstream manifest requests');
    ok(scalar(tokens_of(undef)) <= 1,
       'no credentials: at most one token request');

    $iss->reset_requests;
    $proxy->reset_requests;

    $r = get_manifest('wrong', '1.0');
    is_oci_error($r, 401, 'UNAUTHORIZED', 'wrong password: 401 UNAUTHORIZED');
    my @tr = tokens_of('u-a');
    is(scalar @tr, 1, 'wrong password: one token request');
    is(scalar(grep { ($_->{password} // '') eq $WRONG_PW } @tr), scalar @tr,
       "wrong password: with the remote's own (wrong) password");
    is(scalar(grep { $_->{status} == 401 } @tr), scalar @tr,
       'wrong password: the issuer refused');
    is_deeply([ proxy_token_users() ], [],
              "wrong password: A's token (same user) not sent");
    @m = $proxy->requests_matching(undef, qr{/manifests/1\.0$});
    ok(@m >= 1 && @m <= 2, 'wrong password: at most one retry upstream')
        or diag(scalar(@m) . ' upstream manifest requests');

    $iss->reset_requests;
    $proxy->reset_requests;

    # a blob stored for other repositories: the upstream is asked first
    $r = get_blob('wrong', $h10->{layers}[0]);
    is_oci_error($r, 401, 'UNAUTHORIZED', 'wrong password: blob 401 UNAUTHORIZED');
    is_deeply([ proxy_token_users() ], [], 'wrong password: blob: no token sent');
    @m = $proxy->requests_matching(undef, qr{/blobs/});
    ok(@m >= 1 && @m <= 2, 'wrong password: blob: at most one retry upstream')
        or diag(scalar(@m) . ' upstream blob requests');
    ok(scalar(tokens_of('u-a')) <= 1, 'wrong password: blob: one token request');

    # a blob nothing stored: a fill
    $r = get_blob('wrong', random_digest('wrong'));
    is($r->{status}, 401, 'wrong password: unknown blob 401');
}


# a realm with user information in its URL ("http://127.0.0.1@host/"
# makes "host" the host) is refused before any request: what looks like
# the host may not be it. All on loopback here: tests talk to 127.0.0.1.

{
    my $far = PT::TokenIssuer->new(users => { 'u-far' => $PW{'u-a'} })->start;
    my $disguised = 'http://127.0.0.1@' . $far->host . '/token';
    my $dreg = PT::Registry->new(token => { %{ $far->registry_token },
                                            realm => $disguised })->start;
    $dreg->without_auth(sub { PT::Images::seed($dreg, 'hello') });
    remote('disguised', $dreg->url, 'u-far', $PW{'u-a'});

    $far->reset_requests;
    my $r = get_manifest('disguised', '1.0');
    is_oci_error($r, 401, 'UNAUTHORIZED', "realm $disguised: 401 UNAUTHORIZED");
    is(scalar(my @tr = $far->token_requests), 0,
       "realm $disguised: refused, no token request at all");
    like($t->error_log, qr/token realm .* has user information: refused/,
         "realm $disguised: the error log says why");

    $dreg->stop;
    $far->stop;
}


# no secret in nginx's logs

{
    my $logs = $t->error_log . $t->access_log . PT::Util::slurp($t->dir . '/cache.log');
    my @leaks;
    for my $u (@USERS) {
        push @leaks, "password of $u" if index($logs, $PW{$u}) >= 0;
        push @leaks, "Basic credentials of $u"
            if index($logs, encode_base64("$u:$PW{$u}", '')) >= 0;
    }
    push @leaks, 'the wrong password' if index($logs, $WRONG_PW) >= 0;
    my @jwts = uniq(grep { defined } map { $_->{token} } $iss->all_requests);
    my @sigs = map { (split /\./)[2] } @jwts;
    push @leaks, 'a token' if grep { index($logs, $_) >= 0 } @sigs;
    ok(@jwts > 5, 'tokens were issued');
    is_deeply(\@leaks, [], 'no password, credentials or token in the logs');
}

$t->stop;
$proxy->stop;
$reg->stop;
$iss->stop;

done_testing;
