#!/usr/bin/perl

# Configuration as code: pullthrough_config names a JSON file of remotes
# and pull-through distributions in the admin API's field names. At start
# and at every reload it is applied through the API's own checks: what it
# lists is created or made to match, what an earlier file listed and this
# one does not is deleted, objects made through the API are left alone
# unless the file names them, and secrets come from files. A bad file
# fails nginx -t with the field errors, and a reload with it keeps the
# running state. Pulls go through what the file made.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use JSON::PP;

use PT::Nginx;
use PT::Pulp;
use PT::Registry;
use PT::Images;
use PT::Pull;
use PT::Util qw(need_tools spew);

need_tools(qw(docker-registry skopeo openssl));

my $JSON = JSON::PP->new->canonical;
my $tmp = tempdir('pt-035-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

my $reg = PT::Registry->new->start;
PT::Images::seed($reg, qw(hello));

my $file = "$tmp/pullthrough.json";
spew("$tmp/hub-password", "s3cret\n");
spew("$tmp/latin1", "caf\xe9\n");

sub declare { spew($file, $JSON->encode({ @_ })) }

sub by_name {
    my ($t, $list) = @_;
    return { map { $_->{name} => $_ } @{ list_all($t, $list) } };
}

declare(
    remotes => [
        { name => 'origin', url => $reg->url, pulp_labels => { env => 'test' } },
        { name => 'hub', url => 'https://registry-1.docker.io', username => 'u',
          password_file => "$tmp/hub-password" },
    ],
    distributions => [
        { name => 'cache', base_path => 'cache', remote => 'origin' },
    ],
);

my $t = PT::Nginx->new(conf => admin_conf(http => "pullthrough_config $file;"));
$t->allow_log(qr/pullthrough_config/);
$t->start;


# start: the file applied

my $remotes = by_name($t, $REMOTES);
is_deeply([ sort keys %$remotes ], [ qw(hub origin) ], 'at start, the remotes of the file');
is($remotes->{origin}{url}, $reg->url, '... with its fields');
is_deeply($remotes->{origin}{pulp_labels}, { env => 'test' }, '... labels too');
my %hub_secrets = map { $_->{name} => $_->{is_set} } @{ $remotes->{hub}{hidden_fields} };
ok($hub_secrets{password} && $hub_secrets{username}, 'password_file: the secret is set, from its file');
my $dists = by_name($t, $DISTS);
is_deeply([ keys %$dists ], [ 'cache' ], '... and its distribution');
is($dists->{cache}{remote}, $remotes->{origin}{pulp_href}, '... on the remote the file names by name');
like($t->error_log, qr/pullthrough_config "\Q$file\E": 2 remote\(s\), 1 distribution\(s\); 3 created/,
     'the error log says what was applied');

my ($rc, $out) = skopeo({ timeout => 30 }, 'copy', '--quiet', '--src-tls-verify=false',
                        'docker://' . cache_ref($t, 'library/hello:1.0'), "dir:$tmp/pulled");
is($rc, 0, 'a pull goes through what the file made') or diag($out);

# the API's own objects, beside the file's
my $api_remote = create_remote($t, name => 'api-made', url => 'https://api.example');
create_dist($t, name => 'api-dist', base_path => 'api', remote => $api_remote->{pulp_href});


# an unchanged file: nothing changes

$t->reload;
my $again = by_name($t, $REMOTES);
is_deeply([ map { $again->{$_}{pulp_last_updated} } qw(origin hub) ],
          [ map { $remotes->{$_}{pulp_last_updated} } qw(origin hub) ],
          'a reload with the same file changes nothing, not even pulp_last_updated');
is(scalar keys %$again, 3, '... and leaves the API\'s remote alone');
is_deeply([ sort keys %{ by_name($t, "$API/distributions/container/container/") } ],
          [ 'cache/library/hello' ], '... and what pulls made');


# a changed file: made to match

declare(
    remotes => [
        { name => 'origin', url => $reg->url, tls_validation => JSON::PP::false },
        { name => 'api-made', url => 'https://taken-over.example' },
    ],
    distributions => [
        { name => 'cache', base_path => 'cache', remote => 'origin', description => 'from the file' },
        { name => 'second', base_path => 'second', remote => 'api-made' },
    ],
);
$t->reload;

$remotes = by_name($t, $REMOTES);
is_deeply([ sort keys %$remotes ], [ qw(api-made origin) ], 'a reload with a changed file: hub, no longer listed, is deleted');
ok(!$remotes->{origin}{tls_validation}, '... origin changed');
is_deeply($remotes->{origin}{pulp_labels}, {}, '... to what the file says, whole: the labels it no longer gives are gone');
is($remotes->{'api-made'}{url}, 'https://taken-over.example', '... an API object the file names is made to match');
$dists = by_name($t, $DISTS);
is_deeply([ sort keys %$dists ], [ qw(api-dist cache second) ], '... the new distribution made, the API\'s left');
is($dists->{cache}{description}, 'from the file', '... and the changed one changed');
is_deeply([ sort keys %{ by_name($t, "$API/distributions/container/container/") } ],
          [ 'cache/library/hello' ], '... what pulls made under a changed distribution stays');


# bad files: nginx -t fails with the errors, a reload keeps what runs

my $before = $JSON->encode([ list_all($t, $REMOTES), list_all($t, $DISTS) ]);
my $good = do { local (@ARGV, $/) = ($file); <> };

my @bad = (
    [ 'a field error, as the API gives it',
      { remotes => [ { name => 'origin', url => 'not a url' } ] },
      qr/remote "origin": \{"url":\["Enter a valid URL/ ],
    [ 'an unknown field',
      { remotes => [ { name => 'origin', url => $reg->url, colour => 'blue' } ] },
      qr/remote "origin": \{"colour":\["Unexpected field"\]\}/ ],
    [ 'a remote named by no one',
      { distributions => [ { name => 'cache', base_path => 'cache', remote => 'nowhere' } ] },
      qr/remote "nowhere" is neither in the file nor in the store/ ],
    [ 'a name listed twice',
      { remotes => [ { name => 'origin', url => $reg->url }, { name => 'origin', url => $reg->url } ] },
      qr/remote "origin": listed twice/ ],
    [ 'a secret file that is missing',
      { remotes => [ { name => 'origin', url => $reg->url, password_file => "$tmp/nope" } ] },
      qr/open\(\) "\Q$tmp\E\/nope" failed/ ],
    [ 'a secret file that is not UTF-8',
      { remotes => [ { name => 'origin', url => $reg->url, password_file => "$tmp/latin1" } ] },
      qr/remote "origin": a value read from a file: invalid UTF-8 at byte/ ],
    [ 'a secret given both ways',
      { remotes => [ { name => 'origin', url => $reg->url, password => 'x', password_file => "$tmp/hub-password" } ] },
      qr/"password" and "password_file" are both given/ ],
    [ 'a base_path that overlaps another',
      { remotes => [ { name => 'origin', url => $reg->url } ],
        distributions => [ { name => 'cache', base_path => 'cache', remote => 'origin' },
                           { name => 'sub', base_path => 'cache/sub', remote => 'origin' } ] },
      qr/distribution "sub": \{"base_path":/ ],
    [ 'something else than lists',
      { remotes => { name => 'origin' } },
      qr/"remotes" is not a list of "remotes" or "distributions"/ ],
);

for my $case (@bad) {
    my ($name, $doc, $re) = @$case;
    declare(%$doc);
    my ($st, $said) = $t->test_conf;
    isnt($st, 0, "nginx -t fails on $name");
    like($said, $re, '... saying why');
}

declare(remotes => [ { name => 'origin', url => 'not a url' } ]);
my $mark = length $t->error_log;
kill 'HUP', $t->pid;
ok(wait_for(sub { substr($t->error_log, $mark) =~ /Enter a valid URL/ }, 10),
   'a reload with a bad file is refused, in the error log');
is($JSON->encode([ list_all($t, $REMOTES), list_all($t, $DISTS) ]), $before,
   '... and changes nothing: the running state stays');

spew($file, $good);
my ($st, $said) = $t->test_conf;
is($st, 0, 'nginx -t with a good file again passes') or diag($said);
like($said, qr/\(checked, not applied\)/, '... and only checks it');


# the file's own objects, when it no longer has them

declare();
$t->reload;
is_deeply([ sort keys %{ by_name($t, $DISTS) } ], [ 'api-dist' ],
          'an empty file: the distributions it made are deleted, the API\'s stays');
is_deeply([ sort keys %{ by_name($t, $REMOTES) } ], [ 'api-made' ],
          '... and its remotes, but for one that the API\'s distribution uses');
like($t->error_log, qr/remote "api-made", no longer in the file, is kept: \{"detail":"Remote \\"api-made\\" is used by/,
     '... kept, with a warning that says why');
$t->reload;
is_deeply([ sort keys %{ by_name($t, $REMOTES) } ], [ 'api-made' ], '... and the API\'s from then on');

$t->stop;


# pullthrough_config needs a store

my $t2 = PT::Nginx->new(conf => <<"EOF");
http {
    pullthrough_config $file;
    server { listen 127.0.0.1:%%PORT%%; }
}
EOF
($st, $said) = $t2->test_conf;
isnt($st, 0, 'pullthrough_config without pullthrough_store fails nginx -t');
like($said, qr/"pullthrough_config" needs "pullthrough_store"/, '... saying so');

$reg->stop;

done_testing;
