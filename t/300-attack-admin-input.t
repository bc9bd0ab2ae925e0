#!/usr/bin/perl

# Attacks on the admin API's input, each a fault found by attacking the
# cache, kept out: JSON nested deep enough to take a worker's stack,
# overlong and otherwise invalid UTF-8, NUL characters (and a legitimate
# U+FFFF that is not one), a web page's form or script writing through a
# browser (no JSON Content-Type, another Origin, a rebound DNS name), and
# a remote's custom headers that would replace its credentials.

use strict;
use warnings;

use Test::More;

use PT::Nginx;
use PT::Pulp;

my $t = PT::Nginx->new(conf => admin_conf(server => 'server_name cache.example *.cache.example;'))->start;

my $n = 0;
sub name { 'atk-' . ++$n }

sub alive {
    my ($what) = @_;
    is($t->get($REMOTES)->{status}, 200, "$what: the worker still answers");
}

# --- nesting ---

my $deep = '{"name":' . ('[' x 300_000) . (']' x 300_000) . '}';
my $r = $t->post($REMOTES, $deep);
is_json_status($r, 400, undef, 'JSON nested 300,000 levels: 400');
like($r->{json}{detail} // '', qr/^JSON parse error - nested deeper than 64 levels/,
     '... saying why');
alive('after 300,000 levels');

$r = $t->post($REMOTES, '{"name":"x","url":"https://x.example","pulp_labels":'
              . ('{"a":' x 64) . '1' . ('}' x 64) . '}');
is($r->{status}, 400, '65 levels: refused');
$r = $t->post($REMOTES, '{"name":"' . ('[' x 100) . '","url":"https://x.example"}');
is($r->{status}, 201, 'brackets inside a string are not nesting');

# --- UTF-8 ---

for my $case ([ "\xc0\xaf", 'an overlong "/"' ],
              [ "\xe0\x80\xaf", 'an overlong 3-byte form' ],
              [ "\xed\xa0\x80", 'a surrogate' ],
              [ "\xf4\x90\x80\x80", 'past U+10FFFF' ],
              [ "\xff", 'a byte UTF-8 never has' ],
              [ "\xe2\x82", 'a truncated sequence' ])
{
    my ($bytes, $what) = @$case;
    $r = $t->post($REMOTES, qq({"name":"u$bytes","url":"https://x.example"}));
    is_json_status($r, 400, undef, "$what: 400");
    like($r->{json}{detail} // '', qr/invalid UTF-8 at byte \d+/, "$what: named");
}

my $nm = name();
$r = $t->post($REMOTES, qq({"name":"$nm","url":"https://x.example","pulp_labels":{"k":"a\xef\xbf\xbfb \\uffff"}}));
is($r->{status}, 201, 'U+FFFF, raw and escaped, is a character like any other');
is($t->get($r->{json}{pulp_href})->{json}{pulp_labels}{k}, "a\x{ffff}b \x{ffff}",
   '... and reads back');

$r = $t->post($REMOTES, '{"name":"a\u0000b","url":"https://x.example"}');
is_field_errors($r, { name => 'Null characters are not allowed.' }, 'an escaped NUL: refused');
$r = $t->post($REMOTES, '{"name":"a\udc00b","url":"https://x.example"}');
is($r->{status}, 400, 'an escaped lone surrogate: refused');

# --- a browser acting for a web page ---

my $json = '{"name":"' . name() . '","url":"https://x.example"}';
for my $ct ('text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x',
            'application/jsonp', 'text/json') {
    $r = $t->request('POST', $REMOTES, body => $json, headers => { 'Content-Type' => $ct });
    is_json_status($r, 415, undef, "Content-Type $ct: 415");
}
$r = $t->raw("POST $REMOTES HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: " . length($json)
             . "\r\n\r\n$json");
is($r->{status}, 415, 'no Content-Type: 415');
like($r->{json}{detail} // '', qr/^Unsupported media type/, '... Unsupported media type');
$r = $t->request('POST', $REMOTES, body => $json,
                 headers => { 'Content-Type' => 'application/json; charset=utf-8' });
is($r->{status}, 201, 'application/json; charset=utf-8: taken');

$r = $t->request('POST', $REMOTES, json => { name => name(), url => 'https://x.example' },
                 headers => { Origin => 'http://evil.example' });
is_json_status($r, 403, undef, 'a write from another origin: 403');
$r = $t->request('GET', $REMOTES, headers => { Origin => 'https://evil.example' });
is($r->{status}, 403, 'a read from another origin: 403');
$r = $t->request('GET', $REMOTES, headers => { Origin => 'null' });
is($r->{status}, 403, 'Origin null (a sandboxed page): 403');
$r = $t->request('POST', $REMOTES, json => { name => name(), url => 'https://x.example' },
                 headers => { Origin => 'http://127.0.0.1:' . $t->port });
is($r->{status}, 201, 'the same origin: taken');

for my $host ('evil.example', 'cache.example.evil.example', 'xcache.example') {
    $r = $t->raw("GET $REMOTES HTTP/1.0\r\nHost: $host\r\n\r\n");
    is($r->{status}, 403, "Host $host (DNS rebinding): 403");
}
like($r->{json}{detail} // '', qr/is not served here \(add it to server_name\)/,
     '... saying how to allow it');
for my $host ('cache.example', 'CACHE.example:8080', 'a.cache.example', 'localhost',
              '127.0.0.1', '[::1]:80') {
    $r = $t->raw("GET $REMOTES HTTP/1.0\r\nHost: $host\r\n\r\n");
    is($r->{status}, 200, "Host $host: a name of the server, or an address");
}
like($t->error_log, qr/\[warn\].*admin request for host "evil\.example" refused/,
     'refusals are logged');

# --- headers that are the module's own ---

for my $h ('Authorization', 'proxy-authorization', 'Host', 'Accept') {
    $r = $t->post($REMOTES, { name => name(), url => 'https://x.example',
                                      headers => [ { $h => 'x' } ] });
    is($r->{status}, 400, "headers: $h is refused");
    like($r->{json}{headers}[0] // '', qr/^The header \Q$h\E is the module's own/,
         "... with a field error naming it");
}
$r = $t->post($REMOTES, { name => name(), url => 'https://x.example',
                                  headers => [ { 'X-Api-Key' => 'k' } ] });
is($r->{status}, 201, 'headers: X-Api-Key is taken');

# --- lists cost their page; tasks do not pile up ---

my $rem = $t->post($REMOTES, { name => name(), url => 'https://x.example' })->{json};
my $dist = create_dist($t, name => name(), base_path => 'trim', remote => $rem->{pulp_href});
my $last;
for my $i (1 .. 1150) {
    $last = $t->patch($dist->{pulp_href}, { description => "edit $i" })->{json}{task};
}
ok($last, 'a distribution edited 1150 times, each a task');
$r = $t->get("$TASKS?limit=100000");
is($r->{status}, 200, 'a list with limit=100000');
is(scalar @{ $r->{json}{results} }, 1000, '... holds at most 1000 results');
ok($r->{json}{count} <= 1100, "tasks are trimmed to the newest ($r->{json}{count} kept of 1150+)");
is($t->get($last)->{status}, 200, '... the newest one is there');

$t->stop;
$t->check_error_log;

done_testing;
