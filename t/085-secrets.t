#!/usr/bin/perl

# Secrets (username, password, client_key, proxy_username, proxy_password)
# never leave the server: not in any response (objects, lists, tasks,
# errors) and not in the access or error log. Credentials inside a refused
# url or proxy_url are not echoed or logged either.

use strict;
use warnings;

use Test::More;
use PT::Nginx;
use PT::Pulp;
use PT::Util qw(need_tools);

need_tools('openssl');

# besides error.log at info, a debug log of the http level: the module's
# debug messages must not carry secrets either
my $t = PT::Nginx->new(conf => admin_conf(workers => 2, http => 'error_log %%TESTDIR%%/debug.log debug;'))->start;
my ($cert, $key) = make_cert($t->dir, 'client');
my (undef, $key2) = make_cert($t->dir, 'client2');

# a line of base64 from the middle of a key: it must never show
sub key_marks { my @l = grep { /^[A-Za-z0-9+\/]{40,}$/ } split /\n/, $_[0]; @l[2, 5] }

my @secrets = qw(SeCrEt-user-1f3a SeCrEt-pass-9b2c SeCrEt-pxu-77aa SeCrEt-pxp-42de
                 SeCrEt-user-2 SeCrEt-pass-2 SeCrEt-pxu-2 SeCrEt-pxp-2 SeCrEt-pass-3
                 SeCrEt-urlpass SeCrEt-proxypass SeCrEt-json SeCrEt-bad-user SeCrEt-bad-pass);
push @secrets, key_marks($key), key_marks($key2), 'PRIVATE KEY';

my @responses;
sub req {
    my ($m, @args) = @_;
    my $r = $t->$m(@args);
    push @responses, [ "\U$m\E $args[0]", $r ];
    return $r;
}
sub leaks { my $text = shift; grep { index($text, $_) >= 0 } @secrets }


# the remote's whole life

my $r = req(post => $REMOTES, { name => 'secret', url => 'https://registry.example',
                               username => 'SeCrEt-user-1f3a', password => 'SeCrEt-pass-9b2c',
                               proxy_url => 'http://proxy.example:3128', proxy_username => 'SeCrEt-pxu-77aa',
                               proxy_password => 'SeCrEt-pxp-42de', client_cert => $cert, client_key => $key });
is($r->{status}, 201, 'create with every secret');
my $href = $r->{json}{pulp_href};
ok(!grep({ exists $r->{json}{$_} } @SECRETS), 'no secret as a key');
is_deeply([ map { $_->{is_set} ? 1 : 0 } @{ $r->{json}{hidden_fields} } ], [ 1, 1, 1, 1, 1 ], 'all hidden fields set');

req(get => $href);
req(head => $href);
req(get => $REMOTES);
req(get => "$REMOTES?name=secret");
my $task = req(patch => $href, { username => 'SeCrEt-user-2', password => 'SeCrEt-pass-2',
                                 proxy_username => 'SeCrEt-pxu-2', proxy_password => 'SeCrEt-pxp-2',
                                 client_key => $key })->{json}{task};
req(get => $task);
$r = req(get => $href);
my $got = $r->{json};
$got->{url} = 'https://registry.example/team/';
$task = req(put => $href, { %$got, password => 'SeCrEt-pass-3' })->{json}{task};
req(get => $task);
req(get => $TASKS);
my $d = req(post => $DISTS, { name => 'd', base_path => 'd', remote => $href })->{json}{task};
req(get => $d);
req(get => $DISTS);
is($t->get($href)->{json}{url}, 'https://registry.example/team/', 'PUT applied');
is_deeply([ map { $_->{is_set} ? 1 : 0 } @{ $t->get($href)->{json}{hidden_fields} } ], [ 1, 1, 1, 1, 1 ],
          'secrets still set');


# refused requests that carry secrets

$r = req(post => $REMOTES, { name => 'secret', url => 'https://registry.example',
                            username => 'SeCrEt-bad-user', password => 'SeCrEt-bad-pass' });
is($r->{status}, 400, 'refused create (name taken) with secrets');
$r = req(post => $REMOTES, { name => 'x', url => 'https://u:SeCrEt-urlpass@registry.example' });
is($r->{status}, 400, 'url with credentials refused');
$r = req(post => $REMOTES, { name => 'x', url => 'https://registry.example',
                            proxy_url => 'http://u:SeCrEt-proxypass@proxy.example' });
is($r->{status}, 400, 'proxy_url with credentials refused');
$r = req(post => $REMOTES, { name => 'x', url => 'https://registry.example', client_cert => $cert, client_key => $key2 });
is($r->{status}, 400, 'client_key that does not match refused');
$r = req(post => $REMOTES, { name => 'x', url => 'https://registry.example', client_key => substr($key, 0, 400) });
is($r->{status}, 400, 'truncated client_key refused');
$r = req(post => $REMOTES, { name => 'x', url => 'https://registry.example', client_key => "garbage $key2" });
ok($r->{status} == 400 || $r->{status} == 201, 'client_key after garbage');
$r = req(post => $REMOTES, '{"name": "x", "url": "https://registry.example", "password": "SeCrEt-json", }');
is($r->{status}, 400, 'body not JSON, with a password in it');
$r = req(post => $REMOTES, '{"name": "x", "password": "SeCrEt-json" "url": "https://registry.example"}');
is($r->{status}, 400, 'body not JSON, error right after the password');
$r = req(patch => $href, { password => 'SeCrEt-bad-pass', download_concurrency => 'x' });
is($r->{status}, 400, 'refused PATCH with a password');


# nothing leaked

my @leaks;
for (@responses) {
    my ($what, $r) = @$_;
    my $headers = join "\n", map { "$_: $r->{headers}{$_}" } sort keys %{ $r->{headers} };
    push @leaks, map { "$what: $_" } leaks("$headers\n$r->{content}");
}
ok(!@leaks, scalar(@responses) . ' responses without a secret') or diag(join "\n", @leaks);

$t->stop;

for my $log (qw(access_log error_log stderr_log)) {
    my @l = leaks($t->$log);
    ok(!@l, "$log without a secret") or diag(join "\n", @l);
}
my $debug = PT::Util::slurp($t->dir . '/debug.log');
like($debug, qr/\[debug\]/, 'the debug log has debug lines');
my @l = leaks($debug);
ok(!@l, 'debug log without a secret') or diag(join "\n", @l);

done_testing;
