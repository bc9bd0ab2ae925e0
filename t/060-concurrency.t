#!/usr/bin/perl

# Two workers under parallel clients: 200 creates all land, unique names and
# base paths hold under races (exactly one winner), concurrent PATCHes lose
# no update, concurrent deletes delete once, and a distribution never
# points at a deleted remote.

use strict;
use warnings;

use Test::More;
use PT::Nginx;
use PT::Pulp;

# reuseport: the kernel spreads connections over both workers
my $t = PT::Nginx->new(conf => admin_conf(workers => 2, listen_args => ' reuseport'))->start;
is(scalar @{ $t->worker_pids }, 2, 'two workers');

sub statuses { my %n; $n{ $_->{status} }++ for @{ $_[0] }; \%n }
sub fmt { my $h = shift; join ', ', map { "$_ x$h->{$_}" } sort keys %$h }

sub overlap {
    my ($a, $b) = @_;
    return $a eq $b || index("$a/", "$b/") == 0 || index("$b/", "$a/") == 0;
}


# 200 creates from 8 clients

my $res = parallel(8, sub {
    my ($i) = @_;
    my @out;
    for my $j (1 .. 25) {
        my $name = sprintf 'par-%d-%02d', $i, $j;
        my $r = $t->post($REMOTES, { name => $name, url => "https://$i.example", password => "pw-$j" });
        push @out, { name => $name, status => $r->{status}, href => $r->{json}{pulp_href} };
    }
    return \@out;
});
my @made = map { @$_ } grep { ref eq 'ARRAY' } @$res;
is(scalar @made, 200, '200 creates ran');
is(fmt(statuses(\@made)), '201 x200', 'all 200 answered 201');

my $all = list_all($t, "$REMOTES?name__startswith=par-&limit=50");
is(scalar @$all, 200, 'the list has 200 of them');
my %names = map { $_->{name} => $_ } @$all;
is(scalar keys %names, 200, 'with 200 different names');
my %hrefs = map { $_->{pulp_href} => 1 } @$all;
is(scalar keys %hrefs, 200, 'and 200 different hrefs');
ok(!grep({ !$names{ $_->{name} } || $names{ $_->{name} }{pulp_href} ne ($_->{href} // '') } @made),
   'each one under the href its 201 gave');
is($t->get($REMOTES)->{json}{count}, 200, 'count is 200');

my %pids;
for (split /\n/, $t->access_log) {
    $pids{$1}++ if m{"POST \Q$REMOTES\E HTTP/1\.1" 201 .* pid=(\d+)};
}
is(scalar keys %pids, 2, 'both workers created some') or diag(fmt(\%pids));


# exactly one winner

for my $k (1 .. 5) {
    my $res = parallel(16, sub {
        my $r = $t->post($REMOTES, { name => "dup-$k", url => "https://$_[0].example" });
        return { status => $r->{status}, json => $r->{json} };
    });
    is(fmt(statuses($res)), '201 x1, 400 x15', "16 creates of remote dup-$k: one 201");
    ok(!grep({ $_->{status} == 400 && dump_json($_->{json}) ne '{"name":["This field must be unique."]}' } @$res),
       'the others: name must be unique');
    is($t->get("$REMOTES?name=dup-$k")->{json}{count}, 1, "one remote dup-$k");
}

my $remote = create_remote($t, name => 'base', url => 'https://base.example');

for my $k (1 .. 3) {
    my $res = parallel(16, sub {
        my $r = $t->post($DISTS, { name => "bp-$k-$_[0]", base_path => "race-$k", remote => $remote->{pulp_href} });
        return { status => $r->{status}, json => $r->{json} };
    });
    is(fmt(statuses($res)), '202 x1, 400 x15', "16 distributions on base_path race-$k: one 202");
    ok(!grep({ $_->{status} == 400 && dump_json($_->{json}) ne '{"base_path":["This field must be unique."]}' } @$res),
       'the others: base_path must be unique');
    is($t->get("$DISTS?base_path=race-$k")->{json}{count}, 1, "one distribution on race-$k");

    $res = parallel(16, sub {
        my $r = $t->post($DISTS, { name => "dn-$k", base_path => "dn-$k-$_[0]", remote => $remote->{pulp_href} });
        return { status => $r->{status}, json => $r->{json} };
    });
    is(fmt(statuses($res)), '202 x1, 400 x15', "16 distributions named dn-$k: one 202");
    is($t->get("$DISTS?name=dn-$k")->{json}{count}, 1, "one distribution dn-$k");
}

for my $k (1 .. 3) {
    my $res = parallel(12, sub {
        my $bp = $_[0] % 2 ? "ov-$k/sub-$_[0]" : "ov-$k" . ('/x' x ($_[0] / 4));
        my $r = $t->post($DISTS, { name => "ov-$k-$_[0]", base_path => $bp, remote => $remote->{pulp_href} });
        return { status => $r->{status} };
    });
    my @bps = map { $_->{base_path} } grep { $_->{base_path} =~ /^ov-$k(?:\/|$)/ } @{ list_all($t, $DISTS) };
    my @clash;
    for my $x (0 .. $#bps) {
        push @clash, map { "$bps[$x] ~ $bps[$_]" } grep { overlap($bps[$x], $bps[$_]) } $x + 1 .. $#bps;
    }
    ok(@bps && !@clash, "12 overlapping distributions at once: no overlap made it (@bps)")
        or diag(join "\n", @clash);
}


# PATCHes of different fields at once: none lost

my $target = create_remote($t, name => 'patched', url => 'https://p.example');
my @fields = ([ download_concurrency => 3 ], [ max_retries => 4 ], [ rate_limit => 5 ],
              [ total_timeout => 6 ], [ connect_timeout => 7 ], [ sock_connect_timeout => 8 ],
              [ sock_read_timeout => 9 ], [ includes => [ 'x/*' ] ], [ excludes => [ 'y/*' ] ],
              [ proxy_url => 'http://proxy.example:3128' ], [ headers => [ { 'X-A' => 'b' } ] ],
              [ pulp_labels => { a => 'b' } ]);
$res = parallel(scalar @fields, sub {
    my $r = $t->patch($target->{pulp_href}, { @{ $fields[ $_[0] ] } });
    return { status => $r->{status} };
});
is(fmt(statuses($res)), '202 x' . @fields, 'parallel PATCHes: all 202');
my $now = $t->get($target->{pulp_href})->{json};
my @lost = grep { dump_json($now->{ $_->[0] }) ne dump_json($_->[1]) } @fields;
ok(!@lost, 'parallel PATCHes of different fields: every one applied')
    or diag('lost: ' . join ', ', map { $_->[0] } @lost);


# deletes at once

for my $k (1 .. 3) {
    my $victim = create_remote($t, name => "victim-$k", url => 'https://v.example');
    my $res = parallel(8, sub { my $r = $t->delete($victim->{pulp_href}); return { status => $r->{status} } });
    is(fmt(statuses($res)), '202 x1, 404 x7', "8 deletes of one remote: one 202, 404 for the others");
}


# a distribution created while its remote is deleted

for my $k (1 .. 8) {
    my $rem = create_remote($t, name => "doomed-$k", url => 'https://d.example');
    my $res = parallel(2, sub {
        my $r = $_[0] ? $t->delete($rem->{pulp_href})
                      : $t->post($DISTS, { name => "orphan-$k", base_path => "orphan-$k", remote => $rem->{pulp_href} });
        return { status => $r->{status}, json => $r->{json} };
    });
    my $exists = $t->get($rem->{pulp_href})->{status} == 200;
    my $d = list_all($t, "$DISTS?name=orphan-$k");
    ok(@$d == 0 || ($exists && $d->[0]{remote} eq $rem->{pulp_href}),
       "create distribution vs delete remote ($res->[0]{status}/$res->[1]{status}): no dangling remote")
        or diag(dump_json({ res => $res, dist => $d, remote_exists => $exists }));
}

$t->stop;
done_testing;
